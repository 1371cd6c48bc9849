-- Orthanc sends every image it stores to btk listen (the modality "btk" of its DicomModalities),
-- but no SR or SEG (btk's answers among them), so answers do not go round again.
-- In orthanc.json: "LuaScripts": ["/etc/orthanc/orthanc-to-btk.lua"] and
-- "DicomModalities": {"btk": ["BTK", "127.0.0.1", 11112]}
function OnStoredInstance(instanceId, tags, metadata, origin)
  local modality = tags["Modality"]
  if modality ~= "SR" and modality ~= "SEG" then
    SendToModality(instanceId, "btk")
  end
end
