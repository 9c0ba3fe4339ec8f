"""The Lua scripts of the Redis store and event log: each multi-key change is one atomic script.

Above each script: its KEYS and ARGV, and what it decides. Fenced scripts answer `{1, ...}`
when applied, `{0}` when another lease epoch holds the run (superseded), `{-1}` when the run
is not the active run at all (the store lost it, or it ended elsewhere).
"""

from __future__ import annotations

from collections.abc import Sequence

from nextflow_k8s_service.models import RunEvent
from nextflow_k8s_service.services.event_log import log_lines


def event_args(events: Sequence[RunEvent]) -> list[str]:
    """The events as the append scripts take them: a `log` entry's line count ('' for any
    other entry), then the event's JSON."""
    args: list[str] = []
    for event in events:
        lines = log_lines(event)
        args += ["" if lines is None else str(lines), event.model_dump_json()]
    return args


# Shared functions, prepended to the scripts that use them.
_FENCE = """
local function fence(state, run_id, epoch)
  local s = redis.call('HMGET', state, 'run_id', 'epoch')
  if s[1] ~= run_id then return -1 end
  if s[2] ~= epoch then return 0 end
  return 1
end
"""

_NEXT_EPOCH = """
local function next_epoch(key, floor, ttl)
  local e = redis.call('INCR', key)
  if e <= tonumber(floor) then
    e = tonumber(floor) + 1
    redis.call('SET', key, e)
  end
  redis.call('PEXPIRE', key, ttl)
  return e
end
"""

# Appends the events of ARGV[from..] (pairs: a `log` entry's line count, '' for any other
# entry; the event's JSON) to a run's stream with ids `<n>-0`, n counting on from the stream's
# top or `floor`, whichever is higher (the log may have been lost meanwhile). Then, while the
# stream holds more than `max_entries`, `max_bytes` of payload or `max_lines` log lines, drops
# its oldest `log` entry (an entry with an `n` field), never another kind and never the newest,
# adding its lines to `dropped`. `meta` (hash: bytes, lines, dropped, scan) keeps the totals and
# `scan`, the id before which no `log` entry is left, so each entry is looked at about once.
_APPEND = """
local function top_id(stream)
  local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if top[1] then return tonumber(string.match(top[1][1], '^(%d+)')) end
  return 0
end
local function oldest_log(stream, scan)
  while true do
    local batch = redis.call('XRANGE', stream, scan, '+', 'COUNT', 100)
    for _, entry in ipairs(batch) do
      if entry[2][3] == 'n' then return entry, scan end
      scan = '(' .. entry[1]
    end
    if #batch < 100 then return nil, scan end
  end
end
local function append(stream, meta, floor, max_entries, max_bytes, max_lines, ttl_ms, from)
  local n = math.max(tonumber(floor), top_id(stream))
  local m = redis.call('HMGET', meta, 'bytes', 'lines', 'dropped', 'scan')
  local bytes, lines = tonumber(m[1] or '0'), tonumber(m[2] or '0')
  local dropped, scan = tonumber(m[3] or '0'), m[4] or '-'
  for i = from, #ARGV, 2 do
    n = n + 1
    if ARGV[i] == '' then
      redis.call('XADD', stream, n .. '-0', 'e', ARGV[i + 1])
    else
      redis.call('XADD', stream, n .. '-0', 'e', ARGV[i + 1], 'n', ARGV[i])
      lines = lines + tonumber(ARGV[i])
    end
    bytes = bytes + #ARGV[i + 1]
  end
  local count = redis.call('XLEN', stream)
  local newest = n .. '-0'
  while count > tonumber(max_entries) or bytes > tonumber(max_bytes)
      or lines > tonumber(max_lines) do
    local entry
    entry, scan = oldest_log(stream, scan)
    if entry == nil or entry[1] == newest then break end
    redis.call('XDEL', stream, entry[1])
    scan = '(' .. entry[1]
    bytes = bytes - #entry[2][2]
    lines = lines - tonumber(entry[2][4])
    dropped = dropped + tonumber(entry[2][4])
    count = count - 1
  end
  redis.call('HSET', meta, 'bytes', bytes, 'lines', lines, 'dropped', dropped, 'scan', scan)
  redis.call('PEXPIRE', meta, ttl_ms)
  redis.call('PEXPIRE', stream, ttl_ms)
  return n
end
"""

_MARK = """
local function mark(runs, kind, run_id, max_markers, ttl_ms)
  redis.call('XADD', runs, 'MAXLEN', '~', max_markers, '*', 'kind', kind, 'run_id', run_id)
  redis.call('PEXPIRE', runs, ttl_ms)
end
"""

# KEYS: generation, gate   ARGV: known generation ('' = none yet), new token, lease_ms, ttl_ms
# A missing generation that this replica knew means the store lost its data: a new one is set
# and starting runs pauses for one lease. A replica that knew none (its first look) only sets it.
GENERATION = """
local gen = redis.call('GET', KEYS[1])
if not gen then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
  if ARGV[1] ~= '' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[3]) end
  return ARGV[2]
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return gen
"""

# KEYS: lock, state, op, epoch, generation, gate, runs
# ARGV: token, lease_ms, state_ttl_ms, run_id, record, op_ms, long_ttl_ms, max_markers
# Answers {1, epoch} (acquired), {0, record, owner, epoch} (another run is active) or
# {2, retry_after_ms} (starts paused: the store lost its data, or the generation is unknown).
ACQUIRE = (
    _NEXT_EPOCH
    + _MARK
    + """
if redis.call('EXISTS', KEYS[3]) == 1 then return {1, redis.call('GET', KEYS[3])} end
if redis.call('EXISTS', KEYS[5]) == 0 then return {2, ARGV[2]} end
local paused = redis.call('PTTL', KEYS[6])
if paused > 0 then return {2, tostring(paused)} end
local current = redis.call('HMGET', KEYS[2], 'record', 'owner', 'epoch')
if current[1] then return {0, current[1], current[2] or '', current[3] or '0'} end
local epoch = next_epoch(KEYS[4], 0, ARGV[7])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], 'run_id', ARGV[4], 'owner', ARGV[1], 'epoch', epoch, 'record', ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
mark(KEYS[7], 'start', ARGV[4], ARGV[8], ARGV[7])
redis.call('SET', KEYS[3], epoch, 'PX', ARGV[6])
return {1, tostring(epoch)}
"""
)

# KEYS: lock, state, op, epoch, generation, gate, runs, run:<id>
# ARGV: token, lease_ms, state_ttl_ms, run_id, record, op_ms, long_ttl_ms, max_markers,
#       floor epoch, new generation token
# The owner puts back a run the store lost. Refused (false) if the run finished (its record
# is kept) or any run is active. Makes sure every replica learns of the loss (generation).
REESTABLISH = (
    _NEXT_EPOCH
    + _MARK
    + """
if redis.call('EXISTS', KEYS[3]) == 1 then return redis.call('GET', KEYS[3]) end
if redis.call('EXISTS', KEYS[8]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return false end
if redis.call('EXISTS', KEYS[5]) == 0 then
  redis.call('SET', KEYS[5], ARGV[10], 'PX', ARGV[7])
  redis.call('SET', KEYS[6], '1', 'PX', ARGV[2])
end
local epoch = next_epoch(KEYS[4], ARGV[9], ARGV[7])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], 'run_id', ARGV[4], 'owner', ARGV[1], 'epoch', epoch, 'record', ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
mark(KEYS[7], 'start', ARGV[4], ARGV[8], ARGV[7])
redis.call('SET', KEYS[3], epoch, 'PX', ARGV[6])
return tostring(epoch)
"""
)

# KEYS: state   ARGV: run_id, epoch, record.  HSET keeps the key's TTL.
UPDATE = (
    _FENCE
    + """
local f = fence(KEYS[1], ARGV[1], ARGV[2])
if f ~= 1 then return {f} end
redis.call('HSET', KEYS[1], 'record', ARGV[3])
return {1}
"""
)

# KEYS: state, lock, run:<id>, history, op, events:<id>, events-meta:<id>, runs
# ARGV: run_id, epoch, record, record_ttl_ms, history_limit, history_ttl_ms, op_ms, floor,
#       max_entries, max_bytes, max_lines, max_markers, (line count, event)...
# Appends the final events, records the run and frees the lock. A record whose retention
# already ran out (record_ttl_ms = 0) frees the lock but is not kept. Runs the history no longer
# holds are deleted with their event logs.
FINISH = (
    _FENCE
    + _APPEND
    + _MARK
    + """
if redis.call('EXISTS', KEYS[5]) == 1 then return {1, redis.call('GET', KEYS[5])} end
local f = fence(KEYS[1], ARGV[1], ARGV[2])
if f ~= 1 then return {f} end
local keep_ms = math.max(1, tonumber(ARGV[4]))
local last = append(KEYS[6], KEYS[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], keep_ms, 13)
redis.call('DEL', KEYS[1], KEYS[2])
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
  redis.call('LREM', KEYS[4], 0, ARGV[1])
  redis.call('LPUSH', KEYS[4], ARGV[1])
  -- Runs pushed off the history are forgotten now, with their event logs, rather than at
  -- their TTL: what Redis holds stays flat however many runs a TTL sees. Their key names
  -- share KEYS[3]'s prefix (`<prefix>run:<id>`).
  local prefix = string.sub(KEYS[3], 1, #KEYS[3] - #ARGV[1] - 4)
  for _, old in ipairs(redis.call('LRANGE', KEYS[4], tonumber(ARGV[5]), -1)) do
    redis.call('DEL', prefix .. 'run:' .. old, prefix .. 'events:' .. old,
      prefix .. 'events-meta:' .. old)
  end
  redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[5]) - 1)
  redis.call('PEXPIRE', KEYS[4], ARGV[6])
end
mark(KEYS[8], 'end', ARGV[1], ARGV[12], ARGV[6])
redis.call('SET', KEYS[5], last, 'PX', ARGV[7])
return {1, tostring(last)}
"""
)

# KEYS: state, events:<id>, events-meta:<id>
# ARGV: run_id, epoch, floor, max_entries, max_bytes, max_lines, ttl_ms, (line count, event)...
# `floor` is the last id the writer saw confirmed; a top above it means an earlier attempt of
# this very append landed and only its reply was lost (only the epoch holder appends): it is
# not applied twice.
APPEND = (
    _FENCE
    + _APPEND
    + """
local f = fence(KEYS[1], ARGV[1], ARGV[2])
if f ~= 1 then return {f} end
local top = top_id(KEYS[2])
if top > tonumber(ARGV[3]) then return {1, tostring(top)} end
return {1, tostring(append(KEYS[2], KEYS[3], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], 8))}
"""
)

# KEYS: lock, state, events:<id>, events-meta:<id>
# ARGV: token, run_id, epoch, lease_ms, state_ttl_ms
# The epoch holder may also re-take its own lapsed lock while nobody claimed the run.
RENEW = (
    _FENCE
    + """
local f = fence(KEYS[2], ARGV[2], ARGV[3])
if f ~= 1 then return {f} end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {0} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
redis.call('PEXPIRE', KEYS[4], ARGV[5])
return {1}
"""
)

# KEYS: lock, state   ARGV: token, run_id, epoch.  Leaves the run active, owned by nobody.
RELEASE = (
    _FENCE
    + """
if fence(KEYS[2], ARGV[2], ARGV[3]) ~= 1 then return 0 end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[2], 'owner', '')
return 1
"""
)

# KEYS: lock, state, op, epoch   ARGV: token, lease_ms, state_ttl_ms, op_ms, long_ttl_ms
# Answers {record, epoch} when claimed, else false.
CLAIM = (
    _NEXT_EPOCH
    + """
if redis.call('EXISTS', KEYS[3]) == 1 then
  local again = redis.call('HMGET', KEYS[2], 'record', 'owner', 'epoch')
  if again[1] and again[2] == ARGV[1] then return {again[1], again[3]} end
  return false
end
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local current = redis.call('HMGET', KEYS[2], 'record', 'epoch')
if not current[1] then return false end
local epoch = next_epoch(KEYS[4], current[2] or 0, ARGV[5])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], 'owner', ARGV[1], 'epoch', epoch)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
return {current[1], tostring(epoch)}
"""
)

# KEYS: counter   ARGV: window_ms.  A fixed window: the first hit starts it. Returns
# {hits in this window, milliseconds until it resets}.
RATE_HIT = """
local hits = redis.call('INCR', KEYS[1])
if hits == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {hits, ttl}
"""
