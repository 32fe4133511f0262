# The README's minimal set: only the two required inputs.
project_id = "my-odds-project"
bucket = {
  name = "my-odds-landing"
}
