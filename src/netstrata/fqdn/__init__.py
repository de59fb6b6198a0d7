"""fqdn"""
