-- Resource actions for ModelDeployment: each writes the annotation the operator documents, bound to
-- the revision it is meant for, so an action aimed at a rollout that has moved on is ignored.
local actions = {}
local rolling = obj.status ~= nil and obj.status.canaryRevision ~= nil
local rejected = obj.status ~= nil and obj.status.rejectedRevision ~= nil
actions["promote"] = {["disabled"] = not rolling}
actions["promote-full"] = {["disabled"] = not rolling}
actions["abort"] = {["disabled"] = not rolling}
actions["retry"] = {["disabled"] = not rejected}
return actions
