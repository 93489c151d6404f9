if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {1, 0} end
local starts = redis.call('HINCRBY', KEYS[2], F_STARTS, 1)
local fields = redis.call('HGETALL', KEYS[2])
-- From here until settled, what the legacy application holds is in doubt: a call may land
-- and its answer be lost (time-out, lost worker). The next reconciliation then pushes it all.
redis.call('HSET', KEYS[2], F_DOUBT, '1')
return {1, starts, fields}
