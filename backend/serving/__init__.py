"""Talking to models: which models exist, the engines that serve them, and the HTTP client.

``registry`` resolves a name (a shipped model, a fine-tune, a Hugging Face id, a folder) to a
`ModelSpec`; ``engine`` holds what every engine kind shares (config, status, endpoint);
``local`` supervises the app's own vLLM server, ``remote`` uses one that runs elsewhere;
``client`` is the async client of a vLLM OpenAI-compatible server (token ids in and out) and
``sampling`` how a request samples. A new kind of engine goes here, with the methods listed in
``engine``'s docstring.
"""
