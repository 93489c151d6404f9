local h, dirty, pending = KEYS[1], KEYS[2], KEYS[3]
local version, applied, legacy_key, pwh, ref = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('EXISTS', h) == 0 then return 'gone' end
local current = redis.call('HGET', h, 'v') == version
-- '=' means "the applied state is the desired document": most resources are settled, and the
-- marker saves a second copy of every document (the write script copies it out before a change).
redis.call('HSET', h, 'av', version, 'app', current and '=' or applied, 'lk', legacy_key)
redis.call('HDEL', h, 'err')
if current then redis.call('HDEL', h, 'doubt') end
if pwh ~= '' then redis.call('HSET', h, 'pwh', pwh) end
local pwv = tonumber(redis.call('HGET', h, 'pwv') or '-1')
if pwv >= 0 and pwv <= tonumber(version) then redis.call('HDEL', h, 'pw', 'pwv') end
if not current then return 'moved' end
redis.call('ZREM', dirty, ref)
redis.call('ZREM', pending, ref)
if redis.call('HGET', h, 'del') == '1' then
  redis.call('DEL', h)
  return 'purged'
end
redis.call('HSET', h, 'st', 'applied')
redis.call('HDEL', h, 'fails')
return 'settled'
