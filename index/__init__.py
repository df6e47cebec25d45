"""styleaxis.index"""
