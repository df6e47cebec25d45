"""styleaxis.eval"""
