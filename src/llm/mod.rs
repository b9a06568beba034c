//! Clients for OpenAI-compatible LLM providers.
