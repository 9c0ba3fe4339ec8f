"""The Lua scripts of the Redis state store: each multi-key change is one atomic script.

Above each script: its KEYS and ARGV, and what it decides.
"""

from __future__ import annotations

# KEYS: lock, state, logs:<id>, op   ARGV: token, lease_ms, state_ttl_ms, run_id, record, op_ms
# Wins when no run is active (no `state`). A lock without a state belongs to nothing (a hand
# edit, an eviction) and is overwritten; a state without a lock is an orphan and still active.
ACQUIRE = """
if redis.call('EXISTS', KEYS[4]) == 1 then return {1} end
local current = redis.call('HMGET', KEYS[2], 'record', 'owner')
if current[1] then return {0, current[1], current[2] or ''} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[2], 'run_id', ARGV[4], 'owner', ARGV[1], 'record', ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[4], '1', 'PX', ARGV[6])
return {1}
"""

# KEYS: state   ARGV: run_id, record.  HSET keeps the key's TTL.
UPDATE = """
if redis.call('HGET', KEYS[1], 'run_id') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'record', ARGV[2])
return 1
"""

# KEYS: state, lock, logs:<id>, run:<id>, history, op
# ARGV: run_id, record, record_ttl_ms, history_limit, history_ttl_ms, op_ms
# A record whose retention already ran out (record_ttl_ms = 0) frees the lock but is not kept.
FINISH = """
if redis.call('EXISTS', KEYS[6]) == 1 then return 1 end
if redis.call('HGET', KEYS[1], 'run_id') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[3])
  redis.call('LREM', KEYS[5], 0, ARGV[1])
  redis.call('LPUSH', KEYS[5], ARGV[1])
  redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[4]) - 1)
  redis.call('PEXPIRE', KEYS[5], ARGV[5])
end
redis.call('SET', KEYS[6], '1', 'PX', ARGV[6])
return 1
"""

# KEYS: lock, state, logs:<id>   ARGV: token, run_id, lease_ms, state_ttl_ms
# The owner named in `state` may also re-take its own lapsed lock while nobody claimed the run.
RENEW = """
local state = redis.call('HMGET', KEYS[2], 'run_id', 'owner')
if state[1] ~= ARGV[2] or state[2] ~= ARGV[1] then return 0 end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
return 1
"""

# KEYS: lock, state   ARGV: token, run_id.  Leaves the run active, owned by nobody.
RELEASE = """
if redis.call('HGET', KEYS[2], 'run_id') ~= ARGV[2] then return 0 end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[2], 'owner', '')
return 1
"""

# KEYS: lock, state, op   ARGV: token, lease_ms, state_ttl_ms, op_ms
CLAIM = """
if redis.call('EXISTS', KEYS[3]) == 1 then
  local again = redis.call('HMGET', KEYS[2], 'record', 'owner')
  if again[1] and again[2] == ARGV[1] then return again[1] end
  return false
end
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local record = redis.call('HGET', KEYS[2], 'record')
if not record then return false end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], 'owner', ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
return record
"""

# KEYS: state, logs:<id>   ARGV: run_id, keep, ttl_ms, line...
APPEND_LOGS = """
if redis.call('HGET', KEYS[1], 'run_id') ~= ARGV[1] then return 0 end
redis.call('RPUSH', KEYS[2], unpack(ARGV, 4))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""

# KEYS: counter   ARGV: window_ms.  A fixed window: the first hit starts it. Returns
# {hits in this window, milliseconds until it resets}.
RATE_HIT = """
local hits = redis.call('INCR', KEYS[1])
if hits == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {hits, ttl}
"""
