-- Record what the legacy application holds for one resource (a full or delta import).
-- Refuses when the resource moved since it was read (S_MOVED) or has a pending Okta change
-- (S_PENDING): an observation never overwrites an accepted change.
local h, order, mod, seqkey, dirty, pending, keys, stats =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local id, expected, mode, doc, observed, lk, score = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4],
  ARGV[5], ARGV[6], ARGV[7]
local claims, releases = cjson.decode(ARGV[8]), cjson.decode(ARGV[9])
local adds, removes = cjson.decode(ARGV[10]), cjson.decode(ARGV[11])
local member, now, origin = ARGV[12], ARGV[13], ARGV[14]
local current = tonumber(redis.call('HGET', h, F_VERSION) or '0')
if current ~= expected then return {S_MOVED, tostring(current)} end
if redis.call('ZSCORE', dirty, member) or redis.call('HGET', h, F_SYNC_STATE) == S_PENDING then
  return {S_PENDING, tostring(current)}
end
-- An imported record Okta has written since its import is linked (sticky).
local org = redis.call('HGET', h, F_ORIGIN)
local imported_version = tonumber(redis.call('HGET', h, F_IMPORTED_VERSION) or '0')
if org == 'imported' and imported_version ~= current then
  redis.call('HSET', h, F_ORIGIN, 'linked')
end
if mode == 'same' then
  -- Unchanged: only learn the legacy key (a record known by id, listed for the first time).
  redis.call('HSET', h, F_LEGACY_KEY, lk)
  redis.call('HSET', keys, lk, id)
  return {S_SAME, tostring(current)}
end
if mode == 'enforce' then
  -- Drift to revert: what the application holds becomes the applied state, in doubt, so the
  -- reconciler pushes the whole desired state back.
  redis.call('HSET', h, F_APPLIED, observed, F_DOUBT, '1', F_SYNC_STATE, S_PENDING,
    F_LEGACY_KEY, lk)
  redis.call('ZADD', dirty, now, member)
  redis.call('ZADD', pending, 'NX', now, member)
  redis.call('HINCRBY', stats, 'drift_enforced', 1)
  return {S_ENFORCED, tostring(current)}
end
for _, c in ipairs(claims) do
  local owner = redis.call('HGET', c[1], c[2])
  if owner and owner ~= id then return {S_CONFLICT, c[1]} end
end
for _, r in ipairs(releases) do
  if redis.call('HGET', r[1], r[2]) == id then redis.call('HDEL', r[1], r[2]) end
end
for _, c in ipairs(claims) do redis.call('HSET', c[1], c[2], id) end
for _, s in ipairs(removes) do redis.call('SREM', s, id) end
for _, s in ipairs(adds) do redis.call('SADD', s, id) end
local version = current + 1
redis.call('HSET', h, F_VERSION, version, F_DELETED, '0', F_DESIRED, doc,
  F_APPLIED, APPLIED_IS_DESIRED, F_APPLIED_VERSION, version, F_LEGACY_KEY, lk,
  F_SYNC_STATE, S_APPLIED, F_IMPORTED_VERSION, version)
-- The SCIM 1.1 rendering is made on the next read (the api translates when it is absent).
redis.call('HDEL', h, F_DESIRED_V1, F_ERROR, F_DOUBT, F_FAILURES)
if current == 0 then
  redis.call('HSET', h, F_ORIGIN, origin)
else
  redis.call('HINCRBY', stats, 'drift_imported', 1)
end
local seq = redis.call('HGET', h, F_SEQUENCE)
if not seq then
  seq = redis.call('INCR', seqkey)
  redis.call('HSET', h, F_SEQUENCE, seq)
end
redis.call('ZADD', order, seq, id)
redis.call('ZADD', mod, score, id)
redis.call('HSET', keys, lk, id)
if current == 0 then return {S_CREATED, tostring(version)} end
return {S_UPDATED, tostring(version)}
