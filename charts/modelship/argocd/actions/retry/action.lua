-- retry: sets modelship.io/retry to the revision it applies to; the operator acts once and removes it.
if obj.metadata.annotations == nil then obj.metadata.annotations = {} end
obj.metadata.annotations["modelship.io/retry"] = obj.status.rejectedRevision.hash
return obj
