"""AI Bridge Proxy: an HTTP CONNECT proxy that decrypts only the AI providers' hosts.

A tool that cannot change its base URL sets ``HTTPS_PROXY`` to this listener and trusts its CA.
``listener.py`` reads each CONNECT; a provider host is decrypted with a certificate minted by
``ca.py`` and its requests go through the bridge's one flow (``mitm.py``, hosts mapped by
``hosts.py``); anything else is a blind tunnel (``tunnel.py``) to a checked address
(``addresses.py``).
"""
