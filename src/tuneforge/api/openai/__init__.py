"""OpenAI's wire protocol: the request shapes and their translation, the file checks and their error codes,
the object shapes, and the ``/v1`` routes (files, fine-tuning jobs, models) over the services."""
