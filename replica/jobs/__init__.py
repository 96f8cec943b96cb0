"""The client side of server jobs: streamed replies followed into the replica, and chat views.

* `StreamTracker` (`tracker`): one per app process; owns each job's stream,
  persists every update into the message record through `mirror` (with the
  server's stamps), resumes after a restart, and notifies on completion;
* `JobsClient` (`client`): the jobs API over the replica's HTTP layer;
* `ThreadSession` and `ChatPane` (`session`): the views, which detach and
  never abort while a reply streams;
* `Notifications` (`notifications`): the notification centre, which also
  turns the sync client's refused writes and conflicts into records.

The shapes both sides share are in `quietsync.protocol.jobs`; the guide is
``docs/streaming.md``.
"""

from quietsync.replica.jobs.client import JobsClient, StartMode
from quietsync.replica.jobs.notifications import Notifications
from quietsync.replica.jobs.session import BackgroundJobMode, ChatPane, ThreadSession
from quietsync.replica.jobs.tracker import Attachment, StreamTracker, Subscriber

__all__ = [
    "Attachment",
    "BackgroundJobMode",
    "ChatPane",
    "JobsClient",
    "Notifications",
    "StartMode",
    "StreamTracker",
    "Subscriber",
    "ThreadSession",
]
