"""The second factor: a TOTP app's code at sign-in, with one-time recovery codes (django-otp)."""
