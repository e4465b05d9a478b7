-- wrk: POST batches of 50 events with unique event_ids to the first-party events path.
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  prefix = tostring(tid) .. "-" .. tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9))
  counter = 0
end

function request()
  counter = counter + 1
  local parts = {}
  for i = 1, 50 do
    parts[i] = string.format(
      '{"event":"Purchase","event_id":"%s-%d-%d","properties":{"value":1.5,"currency":"EUR"},"user":{"email":"u%d@example.com"}}',
      prefix, counter, i, i)
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, "[" .. table.concat(parts, ",") .. "]")
end
