-- Record what the legacy application holds for one resource (a full or delta import).
-- Refuses when the resource moved since it was read ('moved') or has a pending Okta change
-- ('pending'): an observation never overwrites an accepted change.
local h, order, mod, seqkey, dirty, pending, keys, stats =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local id, expected, mode, doc, observed, lk, score = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4],
  ARGV[5], ARGV[6], ARGV[7]
local claims, releases = cjson.decode(ARGV[8]), cjson.decode(ARGV[9])
local adds, removes = cjson.decode(ARGV[10]), cjson.decode(ARGV[11])
local member, now, origin = ARGV[12], ARGV[13], ARGV[14]
local current = tonumber(redis.call('HGET', h, 'v') or '0')
if current ~= expected then return {'moved', tostring(current)} end
if redis.call('ZSCORE', dirty, member) or redis.call('HGET', h, 'st') == 'pending' then
  return {'pending', tostring(current)}
end
-- An imported record Okta has written since its import is linked (sticky).
local org = redis.call('HGET', h, 'org')
if org == 'imported' and tonumber(redis.call('HGET', h, 'iv') or '0') ~= current then
  redis.call('HSET', h, 'org', 'linked')
end
if mode == 'same' then
  -- Unchanged: only learn the legacy key (a record known by id, listed for the first time).
  redis.call('HSET', h, 'lk', lk)
  redis.call('HSET', keys, lk, id)
  return {'same', tostring(current)}
end
if mode == 'enforce' then
  -- Drift to revert: what the application holds becomes the applied state, in doubt, so the
  -- reconciler pushes the whole desired state back.
  redis.call('HSET', h, 'app', observed, 'doubt', '1', 'st', 'pending', 'lk', lk)
  redis.call('ZADD', dirty, now, member)
  redis.call('ZADD', pending, 'NX', now, member)
  redis.call('HINCRBY', stats, 'drift_enforced', 1)
  return {'enforced', tostring(current)}
end
for _, c in ipairs(claims) do
  local owner = redis.call('HGET', c[1], c[2])
  if owner and owner ~= id then return {'conflict', c[1]} end
end
for _, r in ipairs(releases) do
  if redis.call('HGET', r[1], r[2]) == id then redis.call('HDEL', r[1], r[2]) end
end
for _, c in ipairs(claims) do redis.call('HSET', c[1], c[2], id) end
for _, s in ipairs(removes) do redis.call('SREM', s, id) end
for _, s in ipairs(adds) do redis.call('SADD', s, id) end
local version = current + 1
redis.call('HSET', h, 'v', version, 'del', '0', 'doc', doc, 'app', '=', 'av', version,
  'lk', lk, 'st', 'applied', 'iv', version)
-- The SCIM 1.1 rendering is made on the next read (the api translates when it is absent).
redis.call('HDEL', h, 'doc1', 'err', 'doubt', 'fails')
if current == 0 then
  redis.call('HSET', h, 'org', origin)
else
  redis.call('HINCRBY', stats, 'drift_imported', 1)
end
local seq = redis.call('HGET', h, 'seq')
if not seq then
  seq = redis.call('INCR', seqkey)
  redis.call('HSET', h, 'seq', seq)
end
redis.call('ZADD', order, seq, id)
redis.call('ZADD', mod, score, id)
redis.call('HSET', keys, lk, id)
if current == 0 then return {'created', tostring(version)} end
return {'updated', tostring(version)}
