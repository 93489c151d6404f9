local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ARGV[1] == 'success' then
  if state ~= 'closed' then redis.call('HINCRBY', KEYS[1], 'closes', 1) end
  redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0)
  redis.call('HDEL', KEYS[1], 'probe', 'probe_until')
  return {'closed', state}
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if state == 'half_open' or (state == 'closed' and failures >= tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', now)
  redis.call('HDEL', KEYS[1], 'probe', 'probe_until')
  redis.call('HINCRBY', KEYS[1], 'opens', 1)
  return {'open', state}
end
return {state, state}
