"""Names that the worker, the client, the tests and outside Temporal clients share.

The workflow type, task queue, search attributes and query names are part of the
public contract (``docs/contract.md``): dashboards and scripts rely on them, so they are
defined once here and imported everywhere else.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import SearchAttributeKey

WORKFLOW_TYPE = "AgentRun"
DEFAULT_TASK_QUEUE = "agentrun"
# Where every Temporal client looks with no configuration (``temporal server start-dev``).
DEFAULT_ADDRESS = "localhost:7233"

OWNER_THREAD_ID = SearchAttributeKey.for_keyword("OwnerThreadId")
AGENT_ID = SearchAttributeKey.for_keyword("AgentId")
DELEGATION_STATUS = SearchAttributeKey.for_keyword("DelegationStatus")
DELEGATION_EPOCH = SearchAttributeKey.for_int("DelegationEpoch")
# True while a call of the run waits for its owner's decision (docs/approvals.md).
AWAITING_APPROVAL = SearchAttributeKey.for_bool("AwaitingApproval")
SEARCH_ATTRIBUTES = (
    OWNER_THREAD_ID,
    AGENT_ID,
    DELEGATION_STATUS,
    DELEGATION_EPOCH,
    AWAITING_APPROVAL,
)

QUERY_SUMMARY = "summary"
QUERY_THREAD = "thread"
QUERY_CHILDREN = "children"
QUERY_RUN_STATE = "run_state"
QUERY_PENDING_APPROVALS = "pending_approvals"
# How many times followers have polled the run's stream (in the worker's memory): a
# turn streams fast only while this moves (docs/design.md, "Streaming").
QUERY_STREAM_POLLS = "stream_polls"
UPDATE_DECIDE_TOOL_CALL = "decide_tool_call"
UPDATE_SEND_MESSAGE = "send_message"
SIGNAL_ASSISTANT_OUTPUT = "assistant_output"
SIGNAL_CHILD_SETTLED = "child_settled"

EVENTS_TOPIC = "events"

TURN_ACTIVITY = "agent_turn"
READ_RUN_ACTIVITY = "read_run"
READ_SUMMARY_ACTIVITY = "read_run_summary"

# A cancel reaches an activity only in a heartbeat response, and heartbeats are sent
# at most every 0.8 x heartbeat timeout, capped by the worker's throttle. A 0.3 s
# throttle makes a cancel visible and a checkpoint durable within about half a
# second; the 5 s timeout bounds how long a killed worker's turn waits for a retry.
TURN_HEARTBEAT_TIMEOUT = timedelta(seconds=5)
HEARTBEAT_THROTTLE = timedelta(milliseconds=300)
# How often a turn or a tool call heartbeats: the throttle. Oftener was waste: the
# worker sends the latest heartbeat once per throttle, and the SDK builds a converter
# and encodes the details for every call (a third of a sleeping turn's time at 0.2 s).
HEARTBEAT_EVERY = HEARTBEAT_THROTTLE.total_seconds()
TURN_START_TO_CLOSE = timedelta(hours=6)
# Events reach a run's stream in batches: each batch is a signal, and a signal with its
# workflow task is four history events. 50 ms keeps an event's trip to a follower near
# 60 ms; longer batches trade latency for history (docs/design.md, "Streaming").
STREAM_BATCH_INTERVAL = timedelta(milliseconds=50)
# ... while someone follows the run; with nobody following, a batch a second.
STREAM_UNWATCHED_BATCH_INTERVAL = timedelta(seconds=1)
# How often a running turn asks whether anyone follows its run (a query: no history,
# but a task on the worker and a trip through the server): every second while followed
# or lately followed, then twice as long after each answer that says nobody follows, up
# to FOLLOWERS_CHECK_MAX, so a thousand unfollowed turns ask 250 times a second, not
# 1,000, and a follower that attaches waits at most that long for fast batches.
FOLLOWERS_CHECK_EVERY = 1.0
FOLLOWERS_CHECK_MAX = 4.0
# A run not polled yet is asked again soon, twice as late each time, until the pause
# reaches FOLLOWERS_CHECK_EVERY: a follower from the start (``agentrun run``) often
# polls first a moment after the turn's first events, and waits for fast batches only
# that long.
FOLLOWERS_FIRST_RECHECK = 0.2
# A followed run counts as unfollowed only after this many answers in a row saw no
# poll: a follower's poll is a query that waits behind the run's own workflow tasks,
# and under load one can outlast a check's pause.
FOLLOWERS_QUIET_CHECKS = 2

# Guards against runaway recursion: a tree never grows deeper than this, and one run
# never delegates more than this many runs.
MAX_DEPTH = 8
MAX_CHILDREN_PER_RUN = 100

# The most runs one tree may have, unless the worker says otherwise
# (``AGENTRUN_MAX_RUNS_PER_TREE``); the tree's root counts them (agentrun/_ledger.py).
MAX_RUNS_PER_TREE = 1000
# Each run's own usage, all its epochs, in its memo: visibility lists it with the run,
# so what a subtree spent is one listing (agentrun/_spend.py).
USAGE_MEMO = "usage"
# A stopped run's latest text, in its memo when it closes: a stop reads every run's
# final summary from one listing (agentrun/_stopping.py). At most TEXT_MEMO_CHARS
# characters (a listing page carries a thousand runs); the run's summary has it whole.
TEXT_MEMO = "text"
TEXT_MEMO_CHARS = 2000
# The reason ``stop_tree`` gives each cancel: it cancels every open run of the subtree
# itself, a level at a time, so a run stopped so sends its children no cancel of its
# own unless one is still running ``CASCADE_FALLBACK`` later (a run the listing missed,
# or a caller that died mid-stop). Any other cancel cascades as Temporal's does.
STOP_TREE_REASON = "agentrun stop_tree: every run of the subtree is cancelled by the caller"
CASCADE_FALLBACK = timedelta(seconds=15)
# The workflow code version every starter gives its runs (``AgentRunInput.version``;
# what each version changes: agentrun/_versions.py).
RUN_VERSION = 1
# Asked of a tree's root for runs to start; answered with how many it grants.
UPDATE_RESERVE_RUNS = "reserve_runs"
RESERVE_RUNS_ACTIVITY = "reserve_runs"
# What a subtree spent, against its budget: read by a run that stops over budget.
CHECK_BUDGET_ACTIVITY = "check_budget"
# Cancels a subtree whose budget is spent, and the run that found it.
STOP_FOR_BUDGET_ACTIVITY = "stop_for_budget"
