if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('HDEL', KEYS[2], F_STARTS)
local previous = tonumber(redis.call('HGET', KEYS[3], 'reconcile_s'))
local seconds = tonumber(ARGV[2])
if previous then seconds = 0.8 * previous + 0.2 * seconds end
redis.call('HSET', KEYS[3], 'reconcile_s', tostring(seconds))
return tonumber(redis.call('HGET', KEYS[2], F_VERSION) or '0')
