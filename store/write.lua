-- Store the next desired state of one or more resources, all or nothing: a user's delete and
-- the groups it leaves are one step. Each write checks the version its caller read (optimistic
-- concurrency) and claims its unique index entries before anything changes.
-- Backpressure is admitted here, in the same step (ARGV[3], 0: no limit): a write is refused
-- when the backlog is full or would grow past the limit, so concurrent writers cannot overshoot.
local seqkey, dirty, pending = KEYS[1], KEYS[2], KEYS[3]
local writes, now, limit = cjson.decode(ARGV[1]), ARGV[2], tonumber(ARGV[3] or '0')
if limit > 0 then
  local backlog, adding = redis.call('ZCARD', dirty), 0
  for _, w in ipairs(writes) do
    if w.mode == 'write' and not redis.call('ZSCORE', dirty, w.ref) then adding = adding + 1 end
  end
  if backlog + math.max(adding, 1) > limit then return {S_BACKLOG, tostring(backlog)} end
end
for i, w in ipairs(writes) do
  local current = tonumber(redis.call('HGET', w.h, F_VERSION) or '0')
  if current ~= tonumber(w.expected) then return {S_MOVED, tostring(current), tostring(i)} end
  for _, c in ipairs(w.claims) do
    local owner = redis.call('HGET', c[1], c[2])
    if owner and owner ~= w.id then return {S_CONFLICT, c[1], tostring(i)} end
  end
end
local versions = {}
for i, w in ipairs(writes) do
  local h, id = w.h, w.id
  for _, r in ipairs(w.releases) do
    if redis.call('HGET', r[1], r[2]) == id then redis.call('HDEL', r[1], r[2]) end
  end
  for _, c in ipairs(w.claims) do redis.call('HSET', c[1], c[2], id) end
  for _, s in ipairs(w.removes) do redis.call('SREM', s, id) end
  for _, s in ipairs(w.adds) do redis.call('SADD', s, id) end
  local version = tonumber(w.expected) + 1
  if redis.call('HGET', h, F_APPLIED) == APPLIED_IS_DESIRED then
    redis.call('HSET', h, F_APPLIED, redis.call('HGET', h, F_DESIRED))
  end
  if w.doc == '' then
    redis.call('HSET', h, F_VERSION, version, F_DELETED, '1', F_DESIRED, '')
    redis.call('HDEL', h, F_DESIRED_V1)
    redis.call('ZREM', w.order, id)
    redis.call('ZREM', w.mod, id)
  else
    redis.call('HSET', h, F_VERSION, version, F_DELETED, '0', F_DESIRED, w.doc)
    if w.doc1 ~= '' then
      redis.call('HSET', h, F_DESIRED_V1, w.doc1)
    else
      redis.call('HDEL', h, F_DESIRED_V1)
    end
    local seq = redis.call('HGET', h, F_SEQUENCE)
    if not seq then
      seq = redis.call('INCR', seqkey)
      redis.call('HSET', h, F_SEQUENCE, seq)
    end
    redis.call('ZADD', w.order, seq, id)
    redis.call('ZADD', w.mod, w.score, id)
  end
  if w.pw ~= '' then redis.call('HSET', h, F_PASSWORD, w.pw, F_PASSWORD_VERSION, version) end
  if w.mode == 'write' then
    redis.call('HSET', h, F_SYNC_STATE, S_PENDING)
    if w.rq ~= '' then redis.call('HSET', h, F_REQUEST_ID, w.rq) else redis.call('HDEL', h, F_REQUEST_ID) end
    redis.call('ZADD', dirty, now, w.ref)
    redis.call('ZADD', pending, 'NX', now, w.ref)
  else
    -- a rollback: desired is the applied state again
    redis.call('HSET', h, F_SYNC_STATE, S_FAILED, F_APPLIED_VERSION, version,
      F_APPLIED, APPLIED_IS_DESIRED)
    redis.call('HDEL', h, F_PASSWORD, F_PASSWORD_VERSION, F_FAILURES, F_DOUBT)
    redis.call('ZREM', dirty, w.ref)
    redis.call('ZREM', pending, w.ref)
  end
  versions[i] = tostring(version)
end
return {'ok', versions[1]}
