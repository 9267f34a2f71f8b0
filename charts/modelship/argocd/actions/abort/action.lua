-- abort: sets modelship.io/abort to the revision it applies to; the operator acts once and removes it.
if obj.metadata.annotations == nil then obj.metadata.annotations = {} end
obj.metadata.annotations["modelship.io/abort"] = obj.status.canaryRevision.hash
return obj
