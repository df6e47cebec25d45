"""styleaxis.pipelines"""
