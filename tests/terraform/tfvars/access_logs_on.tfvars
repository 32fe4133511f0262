# The README-minimal set with Cloud Storage usage logs turned on (the log bucket and its
# writer binding, for organizations that allowed the writer group).
project_id = "my-odds-project"
bucket = {
  name        = "my-odds-landing"
  access_logs = true
}
