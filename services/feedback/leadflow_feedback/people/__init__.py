"""People who sign in to feedback's pages: their accounts, sign-in and sign-out, sessions."""
