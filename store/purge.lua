local h, order, mod, dirty, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, expected, ref = ARGV[1], ARGV[2], ARGV[3]
local releases, removes = cjson.decode(ARGV[4]), cjson.decode(ARGV[5])
if redis.call('HGET', h, F_VERSION) ~= expected then return S_MOVED end
for _, r in ipairs(releases) do
  if redis.call('HGET', r[1], r[2]) == id then redis.call('HDEL', r[1], r[2]) end
end
for _, s in ipairs(removes) do redis.call('SREM', s, id) end
redis.call('DEL', h)
redis.call('ZREM', order, id)
redis.call('ZREM', mod, id)
redis.call('ZREM', dirty, ref)
redis.call('ZREM', pending, ref)
return S_PURGED
