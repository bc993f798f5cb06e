-- wrk script for benches/events_wrk.sh: POSTs batches of BATCH events to the sandbox's
-- events endpoint with FRESH sequenceIds on every request (so nothing is a duplicate and
-- every event goes through registration and the transition check). Each wrk thread has
-- its own id prefix and its own pool of agents, each walking the desktop cycle.
--
-- Environment: TOKEN (bearer token), BATCH (events per request), ASYNC (true|false),
-- RUN (a number that makes ids unique across runs).

local batch = tonumber(os.getenv("BATCH") or "1")
local token = os.getenv("TOKEN") or ""
local async = os.getenv("ASYNC") or "true"
local run = tonumber(os.getenv("RUN") or "0")
local path = "/api/v2/interactions/events?async=" .. async
local states = {
  "routing/agent/available", "routing/agent/busy", "interaction/media/connected",
  "interaction/media/disconnected", "routing/agent/wrapping",
}
local agents = 1000

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local prefix
local counter = 0
local step = {}

function init(args)
  prefix = string.format("%04x%04x", run % 65536, (tid or 0) % 65536)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. token
end

function request()
  local parts = {}
  for i = 1, batch do
    counter = counter + 1
    local a = counter % agents
    local s = step[a] or 0
    step[a] = s + 1
    parts[i] = string.format(
      '{"sequenceId":"%s-0000-4000-8000-%012x","timestamp":"2026-11-21T10:00:00.123456789Z",' ..
      '"interactionId":"%s-2222-4222-8222-%012x","agentId":"%s-1111-4111-8111-%012x",' ..
      '"state":"%s","eventType":"routing/agent/state"}',
      prefix, counter, prefix, a, prefix, a, states[(s % 5) + 1])
  end
  return wrk.format(nil, path, nil, "[" .. table.concat(parts, ",") .. "]")
end
