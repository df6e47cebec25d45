"""styleaxis.embed"""
