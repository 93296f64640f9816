-- Argo CD health check for the Tailkeeper kinds (group tailkeeper.io):
-- TailscaleIntegration, AccessPolicy and AccessGrant share this one script.
--
-- Register it in argocd-cm as resource.customizations.health.tailkeeper.io_<Kind>
-- (see docs/gitops.md). Argo CD runs it in gopher-lua (Lua 5.1) with the live object in
-- the global `obj`; it returns a table with `status` and `message`.
--
-- Order, following kstatus (what Flux and `kubectl wait` read):
--   1. no status, or status.observedGeneration < metadata.generation  -> Progressing
--   2. Stalled=True (a retry cannot fix it)                             -> Degraded
--   3. Reconciling=True (still converging)                              -> Progressing
--   4. AccessGrant with a status.phase:
--        Active -> Healthy; Pending -> Progressing;
--        AwaitingApproval -> Suspended (waits for a person, not for the operator);
--        Expired, Revoked -> Healthy (a finished grant is a record, not a fault);
--        Denied, Failed -> Degraded
--   5. Ready=True -> Healthy; Ready=False -> Degraded (with its message);
--      Ready=Unknown or missing -> Progressing

local function find_condition(status, condition_type)
  if status == nil or type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if type(c) == "table" and c.type == condition_type then
      return c
    end
  end
  return nil
end

local function message_of(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local function health(obj)
  local hs = {}
  local status = obj.status
  if type(status) ~= "table" then
    hs.status = "Progressing"
    hs.message = "Waiting for Tailkeeper to reconcile"
    return hs
  end

  local generation = nil
  if type(obj.metadata) == "table" then
    generation = obj.metadata.generation
  end
  local observed = status.observedGeneration
  if generation ~= nil and (observed == nil or observed < generation) then
    hs.status = "Progressing"
    hs.message = "Waiting for Tailkeeper to observe generation " .. tostring(generation)
    return hs
  end

  local stalled = find_condition(status, "Stalled")
  if stalled ~= nil and stalled.status == "True" then
    hs.status = "Degraded"
    hs.message = message_of(stalled, "Stalled")
    return hs
  end

  local reconciling = find_condition(status, "Reconciling")
  if reconciling ~= nil and reconciling.status == "True" then
    hs.status = "Progressing"
    hs.message = message_of(reconciling, "Reconciling")
    return hs
  end

  local ready = find_condition(status, "Ready")

  if obj.kind == "AccessGrant" and status.phase ~= nil then
    local phase = status.phase
    local text = status.message
    if text == nil or text == "" then
      text = message_of(ready, "Grant is " .. phase)
    end
    if phase == "Active" then
      hs.status = "Healthy"
    elseif phase == "Pending" then
      hs.status = "Progressing"
    elseif phase == "AwaitingApproval" then
      hs.status = "Suspended"
    elseif phase == "Expired" or phase == "Revoked" then
      hs.status = "Healthy"
    elseif phase == "Denied" or phase == "Failed" then
      hs.status = "Degraded"
    else
      hs.status = "Unknown"
      text = "Unknown grant phase " .. tostring(phase)
    end
    hs.message = text
    return hs
  end

  if ready == nil then
    hs.status = "Progressing"
    hs.message = "Waiting for the Ready condition"
  elseif ready.status == "True" then
    hs.status = "Healthy"
    hs.message = message_of(ready, "Ready")
  elseif ready.status == "False" then
    hs.status = "Degraded"
    hs.message = message_of(ready, "Not ready")
  else
    hs.status = "Progressing"
    hs.message = message_of(ready, "Readiness unknown")
  end
  return hs
end

return health(obj)
