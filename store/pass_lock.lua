-- Take an import pass's lock, or take it over from a process of this host that died holding it.
local owner = redis.call('GET', KEYS[1])
if not owner or owner == ARGV[2] or owner == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
  return 1
end
return 0
