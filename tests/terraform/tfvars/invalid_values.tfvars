# Values the variables' validations must refuse: a dataset id with a dash and two collections
# with the same id.
project_id = "my-odds-project"
bucket = {
  name = "my-odds-landing"
}
bigquery = {
  dataset_id = "odds-api"
}
firestore = {
  collections = {
    ledger = "oddsbatch_locks"
  }
}
