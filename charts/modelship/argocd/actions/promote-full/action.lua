-- promote-full: sets modelship.io/promote to the revision it applies to; the operator acts once and removes it.
if obj.metadata.annotations == nil then obj.metadata.annotations = {} end
obj.metadata.annotations["modelship.io/promote"] = obj.status.canaryRevision.hash .. "/full"
return obj
