local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then return {'allow', state} end
local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if state == 'open' and now - opened < tonumber(ARGV[2]) then
  return {'deny', tostring(tonumber(ARGV[2]) - (now - opened))}
end
if probe_until > now then return {'deny', tostring(probe_until - now)} end
local lease = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe', ARGV[1], 'probe_until', lease)
return {'probe', 'half_open'}
