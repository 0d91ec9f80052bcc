"""Settings: the one reader of the environment and .env, and the values each setting allows."""
