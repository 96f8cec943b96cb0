"""The jobs feature of the server: streamed replies written into a space's records.

A job streams an assistant reply from a provider into a message record, with
the server's own stamps, flushed in small batches, so sync and the client's
stream tracker agree on every write (``docs/protocol.md``, "Jobs"). The
feature registers itself on an app::

    create_app(config, [jobs_feature(JobsConfig(max_per_user=8))])

Inside: `config` (settings), `providers` (where output comes from), `runner`
(the policy: start, stream, flush, end, limits, recovery), `job` (one job's
live state), `writer` (what each write contains), `store`, `table`,
`sqlite_store` and `postgres_store` (the job rows beside the sync store),
`remote` (other processes' jobs followed here) and `postgres_peers` (this
process among the others on one PostgreSQL database), `access` (who may see
a job: the members of its space), `views` (HTTP), `feature` (wiring).
"""

from quietsync.server.jobs.config import JobsConfig
from quietsync.server.jobs.feature import jobs_feature
from quietsync.server.jobs.providers import (
    Chat,
    ChatMessage,
    OpenAIProvider,
    Provider,
    ProviderError,
    ScriptedProvider,
    provider_from_env,
    scripted_reply,
)

__all__ = [
    "Chat",
    "ChatMessage",
    "JobsConfig",
    "OpenAIProvider",
    "Provider",
    "ProviderError",
    "ScriptedProvider",
    "jobs_feature",
    "provider_from_env",
    "scripted_reply",
]
