local h, dirty, pending, keys_index = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local version, applied, legacy_key, pwh, ref = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local rid = ARGV[6]
if redis.call('EXISTS', h) == 0 then return S_GONE end
local current = redis.call('HGET', h, F_VERSION) == version
-- APPLIED_IS_DESIRED means "the applied state is the desired document": most resources are
-- settled, and the marker saves a second copy of every document (the write script copies it
-- out before a change).
redis.call('HSET', h, F_APPLIED_VERSION, version,
  F_APPLIED, current and APPLIED_IS_DESIRED or applied, F_LEGACY_KEY, legacy_key)
-- The legacy key names this id from now on: an import of a record that carries no SCIM id (a
-- directory entry, a row without an id column) finds the id Okta knows, not a derived one.
if legacy_key ~= '' then redis.call('HSET', keys_index, legacy_key, rid) end
redis.call('HDEL', h, F_ERROR)
if current then redis.call('HDEL', h, F_DOUBT) end
if pwh ~= '' then redis.call('HSET', h, F_PASSWORD_HASH, pwh) end
local pwv = tonumber(redis.call('HGET', h, F_PASSWORD_VERSION) or '-1')
if pwv >= 0 and pwv <= tonumber(version) then
  redis.call('HDEL', h, F_PASSWORD, F_PASSWORD_VERSION)
end
if not current then return S_MOVED end
redis.call('ZREM', dirty, ref)
redis.call('ZREM', pending, ref)
if redis.call('HGET', h, F_DELETED) == '1' then
  redis.call('DEL', h)
  if legacy_key ~= '' and redis.call('HGET', keys_index, legacy_key) == rid then
    redis.call('HDEL', keys_index, legacy_key)
  end
  return S_PURGED
end
redis.call('HSET', h, F_SYNC_STATE, S_APPLIED)
redis.call('HDEL', h, F_FAILURES, F_REQUEST_ID)
return S_SETTLED
