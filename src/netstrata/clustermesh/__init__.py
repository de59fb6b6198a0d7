"""clustermesh"""
