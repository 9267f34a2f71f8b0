-- Argo CD health for modelship.io/ModelDeployment.
-- Healthy: the stable revision serves and no rollout runs. Progressing: a rollout runs, or the operator
-- has not yet seen the current spec (observedGeneration). Suspended: the rollout waits (manual gate,
-- spec.paused, inconclusive analysis, no capacity). Degraded: a revision was rolled back or aborted, a
-- progress deadline passed, the spec cannot be served or is stalled (Stalled=True), or monitoring finds
-- the model drifting.
local hs = {}
local function condition(t)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == t then return c end
    end
  end
  return nil
end

if obj.status == nil or obj.status.observedGeneration == nil or obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(obj.metadata.generation)
  return hs
end

local ready = condition("Ready")
local degraded = condition("Degraded")
local progressing = condition("Progressing")

if ready ~= nil and ready.reason == "InvalidSpec" then
  hs.status = "Degraded"
  hs.message = "Invalid spec: " .. (ready.message or "")
  return hs
end
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = degraded.reason .. ": " .. (degraded.message or "")
  return hs
end
-- Stalled: nothing moves without a change to the spec (an object the ModelDeployment does not own, a
-- serving revision whose spec is lost, and the cases above).
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. (stalled.message or "")
  return hs
end
-- A model whose monitoring checks fail still serves, but its answers can no longer be trusted.
local drifting = condition("Drifting")
if drifting ~= nil and drifting.status == "True" then
  hs.status = "Degraded"
  hs.message = "Drifting: " .. (drifting.message or "")
  return hs
end
if obj.status.phase == "Paused" then
  hs.status = "Suspended"
  hs.message = (progressing and progressing.message) or "Rollout paused"
  return hs
end
if obj.status.phase == "Progressing" or obj.status.phase == "Pending" or (progressing ~= nil and progressing.status == "True") then
  hs.status = "Progressing"
  hs.message = (progressing and progressing.message) or "Rolling out"
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end
hs.status = "Progressing"
hs.message = (ready and ready.message) or "Waiting for the model to be ready"
return hs
