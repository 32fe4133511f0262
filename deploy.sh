#!/usr/bin/env bash
# Build one self-contained bundle per Cloud Function (2nd gen) and deploy it with gcloud.
#
# Bundle build/<function>/: the function's main.py, its exact requirements.txt, and a
# vendored copy of shared/oddsbatch/ (*.py and schemas/*.json; never local/, the local
# stack, nor __pycache__). Each function is then deployed on the landing bucket's
# object-finalize event, with Eventarc retries, internal-only ingress and its own
# service account, built by Terraform's build service account, its trigger in the bucket's
# location. After each deploy, the dead-letter policy goes on the function's own Eventarc
# subscription (it exists only once the function is deployed). Run ./deploy.sh --help for the
# options.
set -euo pipefail

readonly FUNCTIONS=(game_lines player_props)
readonly EVENT_TYPE="google.cloud.storage.object.v1.finalized"
readonly SWEEP_EVENT_TYPE="google.cloud.pubsub.topic.v1.messagePublished"
# The ack deadline of every Eventarc subscription deploy.sh touches: Pub/Sub's maximum, 600 s
# (https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.subscriptions, ackDeadlineSeconds:
# "The maximum custom deadline you can specify is 600 seconds"). Eventarc creates them with
# 10 s, so a sweep or batch that runs longer is redelivered while it runs.
readonly ACK_DEADLINE=600
readonly RUNTIME="python312"
readonly MAX_EVENT_TIMEOUT=540 # seconds: the ceiling of event-driven functions
# A dead-letter policy allows 5 to 100 delivery attempts:
# https://cloud.google.com/pubsub/docs/dead-letter-topics and
# https://cloud.google.com/python/docs/reference/pubsub/2.15.1/google.cloud.pubsub_v1.types.DeadLetterPolicy
readonly MIN_DELIVERY_ATTEMPTS=5
readonly MAX_DELIVERY_ATTEMPTS=100
readonly TOPIC_RE='^projects/[a-z]([-a-z0-9.:]*[a-z0-9])?/topics/[A-Za-z][-A-Za-z0-9_.~+%]{2,254}$'
script="${BASH_SOURCE[0]}"
[[ "$script" == */* ]] || script="./$script"
ROOT="$(cd "${script%/*}" && pwd)"
readonly ROOT

usage() {
  cat <<'EOF'
Usage: ./deploy.sh [options]

Builds build/<function>/ for game_lines and player_props, then runs
`gcloud functions deploy` for each, and after each deploy puts the dead-letter policy on the
function's Eventarc subscription: finds the trigger (gcloud functions describe) and its
subscription (gcloud eventarc triggers describe), runs gcloud pubsub subscriptions update
--dead-letter-topic --max-delivery-attempts, and grants roles/pubsub.subscriber on it to the
project's Pub/Sub service agent (Terraform grants it publisher on the topic). Then it makes
the function's sweep trigger (gcloud eventarc triggers create oddsbatch-sweep-SERVICE on the
sweep topic, unless it exists), and sets --ack-deadline=600 on the Eventarc subscriptions of
both triggers.

Every setting Terraform decides is read from `terraform output -json` (--outputs-json FILE,
else terraform/'s state when terraform is on PATH): project, bucket and its location, region,
dataset and its location, Firestore database and collections, quarantine bucket and prefix,
service accounts, dead-letter topic. A flag for one of them is used when Terraform has no
value; a flag that contradicts Terraform's value is refused. Without Terraform, the defaults
below are the module's defaults.

  --outputs-json FILE            the JSON of `terraform output -json` [terraform/'s state]
  --project P                    GCP project (or $ODDSBATCH_DEPLOY_PROJECT) [output project_id]
  --bucket B                     landing bucket whose finalize events trigger the functions
                                 (or $ODDSBATCH_DEPLOY_BUCKET) [output bucket_name]
  --region R                     region (or $ODDSBATCH_DEPLOY_REGION) [output region, else us-central1]
  --bucket-location L            location of the bucket: US, EU, ASIA (multi-regions), a
                                 dual-region such as NAM4, or a region such as US-CENTRAL1
                                 [output bucket_location, else US]
  --trigger-location L           Eventarc trigger location; must be the bucket's location
                                 [derived: US -> us, EU -> eu, NAM4 -> nam4, US-CENTRAL1 ->
                                 us-central1]
  --dataset D                    BigQuery dataset, ODDSBATCH_DATASET [output dataset_id, else odds_api]
  --bigquery-location L          location of the dataset, ODDSBATCH_BIGQUERY_LOCATION
                                 [output bigquery_location, else US]
  --firestore-database D         ODDSBATCH_FIRESTORE_DATABASE [output firestore_database, else (default)]
  --quarantine-prefix P          ODDSBATCH_QUARANTINE_PREFIX [output quarantine_prefix, else quarantine/]
  --service-account-game-lines SA
                                 [output service_accounts, else oddsbatch-game-lines@P.iam.gserviceaccount.com]
  --service-account-player-props SA
                                 [output service_accounts, else oddsbatch-player-props@P.iam.gserviceaccount.com]
  --trigger-service-account SA   identity of the Eventarc triggers [output
                                 trigger_service_account, else oddsbatch-trigger@P.iam.gserviceaccount.com]
  --build-service-account SA     account Cloud Build builds the functions as (an email or
                                 projects/P/serviceAccounts/EMAIL) [output build_service_account,
                                 else oddsbatch-build@P.iam.gserviceaccount.com]
  The collections (ODDSBATCH_*_COLLECTION), the quarantine bucket (ODDSBATCH_QUARANTINE_BUCKET) and
  the staging bucket (ODDSBATCH_STAGING_BUCKET) have no flag: outputs firestore_collections,
  quarantine_bucket and staging_bucket, else the module's defaults (BUCKET-staging for staging).
  --memory M                     memory per instance [512Mi]: 8 holders of 300-file dates peak 112 MiB,
                                 a 30 MB file 39 MiB above idle (bench/RESULTS.md; README, "Memory")
  --timeout T                    seconds, at most 540, e.g. 540 or 540s [540s]
  --max-instances N              [10]
  --concurrency C                requests per instance (cpu is 1), also THREADS [8]
  --settle-seconds S             ODDSBATCH_SETTLE_SECONDS, longest wait for a burst [5]
  --lease-seconds L              ODDSBATCH_LEASE_SECONDS, must exceed the timeout [600]
  --dead-letter-topic T          projects/P/topics/TOPIC where undeliverable events go, or
                                 none to skip the dead-letter step [output dead_letter_topic,
                                 else projects/P/topics/oddsbatch-dead-letters]
  --sweep-topic T                topic of the sweep's scheduler job, which a trigger per function
                                 delivers [output sweep_topic, else projects/P/topics/oddsbatch-sweep]
  --max-delivery-attempts N      deliveries before an event is dead-lettered, 5..100 [50: 50
                                 attempts end within Eventarc's 24 h retention]
  --only game_lines|player_props deploy one function
  --build-dir DIR                where bundles are built [build]
  --dry-run                      build the bundles, print the gcloud commands on stdout
                                 (per function: its deploy line, then the dead-letter lines,
                                 with "$(...)" for values known only after the deploy), run
                                 nothing
  --build-only                   build the bundles only
  -h, --help                     this help

Exit status 2 on a usage error, 1 when a step after a deploy fails (one line on stderr).
EOF
}

die() {
  echo "deploy.sh: $*" >&2
  exit 2
}

fail() {
  echo "deploy.sh: $*" >&2
  exit 1
}

readonly BUCKET_LOCATION_RE='^[A-Za-z]+[0-9]*(-[A-Za-z]+[0-9]+)?$'

# --- Terraform's outputs: the one source of the settings Terraform decides ---------------
# `terraform output -json` (from --outputs-json FILE, else from terraform/ when terraform is on
# PATH) flattened to "name<TAB>value" lines, maps as name.key: only non-empty one-line strings.
# Terraform without a state prints {} or a warning: no settings then, the flags and defaults
# apply. A file that is not Terraform's JSON is refused.
declare -A tf=()
read_terraform_outputs() {
  local source="$1" json key value
  if [[ -n "$source" ]]; then
    [[ -r "$source" ]] || die "--outputs-json $source: no such readable file"
    json="$(<"$source")"
  elif command -v terraform >/dev/null 2>&1; then
    json="$(terraform -chdir="$ROOT/terraform" output -json -no-color 2>/dev/null)" || return 0
  else
    return 0
  fi
  command -v python3 >/dev/null 2>&1 || die "python3 is needed to read Terraform's outputs (gcloud needs it too)"
  local lines
  lines="$(
    python3 -c '
import json, sys
strict = sys.argv[1] == "file"
try:
    data = json.loads(sys.stdin.read())
except ValueError:
    sys.exit(3 if strict else 0)
if not isinstance(data, dict):
    sys.exit(3 if strict else 0)
flat = {}
for name, out in data.items():
    value = out.get("value") if isinstance(out, dict) else None
    if isinstance(value, dict):
        flat.update({f"{name}.{k}": v for k, v in value.items()})
    else:
        flat[name] = value
for key, value in sorted(flat.items()):
    if isinstance(value, str) and value and not any(c in value for c in "\t\r\n"):
        print(f"{key}\t{value}")
' "$([[ -n "$source" ]] && echo file || echo state)" <<<"$json"
  )" || die "--outputs-json $source is not the JSON of terraform output -json"
  while IFS=$'\t' read -r key value; do
    [[ -n "$key" ]] && tf["$key"]="$value"
  done <<<"$lines"
  return 0
}

# The value of a setting Terraform decides: the flag's when Terraform has none, Terraform's when
# no flag was given, else (they differ) a one-line refusal; the default when neither has one.
#   setting FLAG GIVEN OUTPUT DEFAULT [NORMALIZE]   (NORMALIZE: upper, for locations)
setting() {
  local flag="$1" given="$2" key="$3" default="$4" from_tf="${tf[$3]:-}" a b
  a="$given" b="$from_tf"
  if [[ "${5:-}" == "upper" ]]; then a="${a^^}" b="${b^^}"; fi
  if [[ -n "$given" && -n "$from_tf" && "$a" != "$b" ]]; then
    die "$flag $given contradicts Terraform's output $key = $from_tf (terraform/): drop the flag or apply Terraform with it"
  fi
  if [[ -n "$given" ]]; then echo "$given"; elif [[ -n "$from_tf" ]]; then echo "$from_tf"; else echo "$default"; fi
}

# --- options --------------------------------------------------------------------------
project="${ODDSBATCH_DEPLOY_PROJECT:-}"
region="${ODDSBATCH_DEPLOY_REGION:-}"
bucket="${ODDSBATCH_DEPLOY_BUCKET:-}"
trigger_location=""
bucket_location=""
sa_build=""
dataset=""
sa_game_lines=""
sa_player_props=""
sa_trigger=""
bigquery_location=""
firestore_database=""
quarantine_prefix=""
sweep_topic=""
outputs_json=""
memory="512Mi"
timeout="540s"
max_instances="10"
concurrency="8"
settle_seconds="5"
lease_seconds="600"
dead_letter_topic=""
max_delivery_attempts="50"
only=""
build_dir="build"
mode="deploy" # deploy | dry-run | build-only

while (($# > 0)); do
  arg="$1"
  shift
  case "$arg" in
    -h | --help)
      usage
      exit 0
      ;;
    --dry-run) mode="dry-run" ;;
    --build-only) mode="build-only" ;;
    --*=*)
      # --flag=value: put it back as two words
      set -- "${arg%%=*}" "${arg#*=}" "$@"
      continue
      ;;
    --project | --region | --trigger-location | --bucket-location | --bucket | --dataset | --service-account-game-lines | \
      --service-account-player-props | --trigger-service-account | --build-service-account | --bigquery-location | --memory | \
      --timeout | --max-instances | --concurrency | --settle-seconds | --lease-seconds | --only | --build-dir | \
      --dead-letter-topic | --max-delivery-attempts | --firestore-database | --quarantine-prefix | --outputs-json | --sweep-topic)
      (($# > 0)) || die "$arg needs a value"
      value="$1"
      shift
      case "$arg" in
        --project) project="$value" ;;
        --region) region="$value" ;;
        --trigger-location) trigger_location="$value" ;;
        --bucket-location) bucket_location="$value" ;;
        --build-service-account) sa_build="$value" ;;
        --bucket) bucket="$value" ;;
        --dataset) dataset="$value" ;;
        --service-account-game-lines) sa_game_lines="$value" ;;
        --service-account-player-props) sa_player_props="$value" ;;
        --trigger-service-account) sa_trigger="$value" ;;
        --bigquery-location) bigquery_location="$value" ;;
        --memory) memory="$value" ;;
        --timeout) timeout="$value" ;;
        --max-instances) max_instances="$value" ;;
        --concurrency) concurrency="$value" ;;
        --settle-seconds) settle_seconds="$value" ;;
        --lease-seconds) lease_seconds="$value" ;;
        --only) only="$value" ;;
        --build-dir) build_dir="$value" ;;
        --dead-letter-topic) dead_letter_topic="$value" ;;
        --max-delivery-attempts) max_delivery_attempts="$value" ;;
        --firestore-database) firestore_database="$value" ;;
        --quarantine-prefix) quarantine_prefix="$value" ;;
        --outputs-json) outputs_json="$value" ;;
        --sweep-topic) sweep_topic="$value" ;;
      esac
      ;;
    *) die "unknown option: $arg (see --help)" ;;
  esac
done

# --- validation (before anything is built) --------------------------------------------
selected=()
case "$only" in
  "") selected=("${FUNCTIONS[@]}") ;;
  game_lines | player_props) selected=("$only") ;;
  *) die "--only must be game_lines or player_props, got '$only'" ;;
esac
[[ -n "$build_dir" ]] || die "--build-dir must not be empty"

if [[ "$mode" != "build-only" ]]; then
  read_terraform_outputs "$outputs_json"
  project="$(setting --project "$project" project_id "")" || exit $?
  bucket="$(setting --bucket "$bucket" bucket_name "")" || exit $?
  region="$(setting --region "$region" region us-central1)" || exit $?
  bucket_location="$(setting --bucket-location "$bucket_location" bucket_location US upper)" || exit $?
  dataset="$(setting --dataset "$dataset" dataset_id odds_api)" || exit $?
  bigquery_location="$(setting --bigquery-location "$bigquery_location" bigquery_location US upper)" || exit $?
  firestore_database="$(setting --firestore-database "$firestore_database" firestore_database "(default)")" || exit $?
  quarantine_prefix="$(setting --quarantine-prefix "$quarantine_prefix" quarantine_prefix quarantine/)" || exit $?
  sa_game_lines="$(setting --service-account-game-lines "$sa_game_lines" service_accounts.game_lines "")" || exit $?
  sa_player_props="$(setting --service-account-player-props "$sa_player_props" service_accounts.player_props "")" || exit $?
  sa_trigger="$(setting --trigger-service-account "$sa_trigger" trigger_service_account "")" || exit $?
  # Compared by email; a given projects/P/serviceAccounts/EMAIL keeps its form.
  build_email="$(setting --build-service-account "${sa_build#projects/*/serviceAccounts/}" build_service_account "")" || exit $?
  sa_build="${sa_build:-$build_email}"
  sweep_topic="$(setting --sweep-topic "$sweep_topic" sweep_topic "")" || exit $?
  if [[ "$dead_letter_topic" != "none" ]]; then
    dead_letter_topic="$(setting --dead-letter-topic "$dead_letter_topic" dead_letter_topic "")" || exit $?
  fi
  # The quarantine bucket and the collections have no flag: Terraform's or the functions' defaults.
  quarantine_bucket="${tf[quarantine_bucket]:-$bucket}"
  # The holders' staging objects (ODDSBATCH_STAGING_BUCKET): Terraform's, else the module's name for it.
  staging_bucket="${tf[staging_bucket]:-$bucket-staging}"
  # The sweep drains this subscription (sweep.py): Terraform's, else the module's default name.
  dead_letter_subscription="${tf[dead_letters_subscription]:-}"
  collection_fences="${tf[firestore_collections.fences]:-oddsbatch_fences}"
  collection_ledger="${tf[firestore_collections.ledger]:-oddsbatch_merged}"
  collection_locks="${tf[firestore_collections.locks]:-oddsbatch_locks}"
  collection_pending="${tf[firestore_collections.pending]:-oddsbatch_pending}"
  collection_runs="${tf[firestore_collections.runs]:-oddsbatch_runs}"
  collection_sweeps="${tf[firestore_collections.sweeps]:-oddsbatch_sweeps}"
  [[ -n "$project" ]] || die "missing --project (or ODDSBATCH_DEPLOY_PROJECT)"
  [[ -n "$bucket" ]] || die "missing --bucket (or ODDSBATCH_DEPLOY_BUCKET)"
  [[ -n "$region" ]] || die "missing --region (or ODDSBATCH_DEPLOY_REGION)"
  # The shape only (a dry run with --project p --bucket b prints the commands); lengths are
  # left to gcloud.
  [[ "$project" =~ ^[a-z]([-a-z0-9.:]*[a-z0-9])?$ ]] || die "--project is not a project id: '$project'"
  [[ "$bucket" =~ ^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$ ]] || die "--bucket is not a bucket name (no gs://): '$bucket'"
  [[ "$region" =~ ^[a-z]+-[a-z]+[0-9]+$ ]] || die "--region is not a region: '$region'"
  [[ -z "$trigger_location" || "$trigger_location" =~ ^[a-z][-a-z0-9]*[a-z0-9]$ ]] ||
    die "--trigger-location is not a location: '$trigger_location'"
  # Bucket locations: multi-regions (US, EU, ASIA), dual-regions (NAM4, EUR4, ...), regions
  # (US-CENTRAL1, ...): https://cloud.google.com/storage/docs/locations
  [[ "$bucket_location" =~ $BUCKET_LOCATION_RE ]] ||
    die "--bucket-location is not a bucket location (US, EU, ASIA, NAM4, US-CENTRAL1 ...): '$bucket_location'"
  # A Cloud Storage trigger must sit in its bucket's location (a US multi-region bucket needs
  # the trigger in us, not in the function's region): https://cloud.google.com/eventarc/docs/understand-locations
  # Cloud Storage triggers exist in single-, dual- and multi-region locations, named like the
  # bucket's location in lowercase (us, eu, asia, nam4, us-central1): https://cloud.google.com/eventarc/docs/locations
  bucket_trigger_location="${bucket_location,,}"
  if [[ -n "$trigger_location" && "$trigger_location" != "$bucket_trigger_location" ]]; then
    die "--trigger-location $trigger_location contradicts the bucket's location $bucket_location: a Cloud Storage trigger must be in $bucket_trigger_location"
  fi
  trigger_location="$bucket_trigger_location"
  if [[ -n "$sa_build" && "$sa_build" != projects/*/serviceAccounts/* ]]; then
    [[ "$sa_build" =~ ^[^@/]+@[^@/]+$ ]] ||
      die "--build-service-account must be an email or projects/P/serviceAccounts/EMAIL, got '$sa_build'"
  fi
  [[ "$dataset" =~ ^[A-Za-z0-9_]+$ ]] || die "--dataset must be letters, digits and underscores, got '$dataset'"
  [[ "$bigquery_location" =~ ^[A-Za-z0-9-]+$ ]] || die "--bigquery-location must be letters, digits and dashes, got '$bigquery_location'"
  [[ "$firestore_database" == "(default)" || "$firestore_database" =~ ^[a-z][a-z0-9-]{2,61}[a-z0-9]$ ]] ||
    die "--firestore-database must be (default) or a database id (4-63 lowercase letters, digits and -), got '$firestore_database'"
  [[ "$quarantine_prefix" =~ ^[A-Za-z0-9_.-]+/$ ]] ||
    die "--quarantine-prefix must be one folder name ending in /, got '$quarantine_prefix'"
  [[ "$memory" =~ ^[0-9]+(Mi|Gi|M|G|MB|GB)$ ]] || die "--memory must look like 512Mi or 1Gi, got '$memory'"
  [[ "$timeout" =~ ^([0-9]+)s?$ ]] || die "--timeout must be whole seconds (540 or 540s), got '$timeout'"
  timeout_seconds=$((10#${BASH_REMATCH[1]}))
  ((timeout_seconds >= 1 && timeout_seconds <= MAX_EVENT_TIMEOUT)) ||
    die "--timeout must be 1..${MAX_EVENT_TIMEOUT} seconds for an event-driven function, got '$timeout'"
  [[ "$max_instances" =~ ^[1-9][0-9]*$ ]] || die "--max-instances must be a positive whole number, got '$max_instances'"
  [[ "$concurrency" =~ ^[1-9][0-9]*$ ]] || die "--concurrency must be a positive whole number, got '$concurrency'"
  [[ "$settle_seconds" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--settle-seconds must be a number >= 0, got '$settle_seconds'"
  [[ "$lease_seconds" =~ ^[1-9][0-9]*$ ]] || die "--lease-seconds must be a positive whole number, got '$lease_seconds'"
  ((lease_seconds > timeout_seconds)) ||
    die "--lease-seconds ($lease_seconds) must exceed the timeout (${timeout_seconds}s), or a running batch loses its lock"
  [[ "$max_delivery_attempts" =~ ^[1-9][0-9]{0,2}$ ]] &&
    ((max_delivery_attempts >= MIN_DELIVERY_ATTEMPTS && max_delivery_attempts <= MAX_DELIVERY_ATTEMPTS)) ||
    die "--max-delivery-attempts must be a whole number from $MIN_DELIVERY_ATTEMPTS to $MAX_DELIVERY_ATTEMPTS (Pub/Sub's bounds), got '$max_delivery_attempts'"
  dead_letter_topic="${dead_letter_topic:-projects/${project}/topics/oddsbatch-dead-letters}"
  sweep_topic="${sweep_topic:-projects/${project}/topics/oddsbatch-sweep}"
  dead_letter_subscription="${dead_letter_subscription:-projects/${project}/subscriptions/oddsbatch-dead-letters}"
  [[ "$sweep_topic" =~ $TOPIC_RE ]] || die "--sweep-topic must be projects/P/topics/TOPIC, got '$sweep_topic'"
  # A dead-letter topic is named projects/{project}/topics/{topic}:
  # https://cloud.google.com/python/docs/reference/pubsub/2.15.1/google.cloud.pubsub_v1.types.DeadLetterPolicy
  [[ "$dead_letter_topic" == "none" || "$dead_letter_topic" =~ $TOPIC_RE ]] ||
    die "--dead-letter-topic must be projects/P/topics/TOPIC or none, got '$dead_letter_topic'"
  if [[ "$mode" == "deploy" ]]; then
    command -v gcloud >/dev/null 2>&1 || die "gcloud not found on PATH (install the Google Cloud SDK, or use --dry-run)"
  fi
fi

# In a dry run stdout carries only the commands; progress goes to stderr.
say() {
  if [[ "$mode" == "dry-run" ]]; then echo "$*" >&2; else echo "$*"; fi
}

# --- bundles --------------------------------------------------------------------------
# The files of the vendored package, relative to shared/oddsbatch/: modules and schemas,
# never the local stack (local/) nor bytecode.
package_files() {
  (
    cd "$ROOT/shared/oddsbatch"
    find . \( -path ./local -o -name __pycache__ \) -prune -o -type f -name '*.py' -print
    find ./schemas -maxdepth 1 -type f -name '*.json' -print
  ) | sed 's|^\./||' | LC_ALL=C sort
}

build_bundle() {
  local fn="$1" dest="$build_dir/$1" src="$ROOT/functions/$1" listing rel count
  local -a files
  [[ -f "$src/main.py" && -f "$src/requirements.txt" ]] || die "functions/$fn/main.py or requirements.txt missing"
  listing="$(package_files)" # a failure here stops the script (a process substitution would not)
  mapfile -t files <<<"$listing"
  [[ -f "$ROOT/shared/oddsbatch/${files[0]:-}" ]] || die "no package files found under shared/oddsbatch"
  rm -rf "$dest"
  mkdir -p "$dest/oddsbatch"
  cp "$src/main.py" "$src/requirements.txt" "$dest/"
  count=2
  for rel in "${files[@]}"; do
    if [[ "$rel" == */* ]]; then
      mkdir -p "$dest/oddsbatch/${rel%/*}"
    fi
    cp "$ROOT/shared/oddsbatch/$rel" "$dest/oddsbatch/$rel"
    count=$((count + 1))
  done
  say "built $dest ($count files)"
}

# --- deploy ---------------------------------------------------------------------------
# gcloud takes the build account as a resource name, projects/P/serviceAccounts/EMAIL:
# https://cloud.google.com/sdk/gcloud/reference/functions/deploy (--build-service-account)
build_service_account() {
  local sa="${sa_build:-oddsbatch-build@${project}.iam.gserviceaccount.com}"
  if [[ "$sa" == projects/*/serviceAccounts/* ]]; then echo "$sa"; else echo "projects/${project}/serviceAccounts/${sa}"; fi
}

service_account_for() {
  case "$1" in
    game_lines) echo "${sa_game_lines:-oddsbatch-game-lines@${project}.iam.gserviceaccount.com}" ;;
    player_props) echo "${sa_player_props:-oddsbatch-player-props@${project}.iam.gserviceaccount.com}" ;;
  esac
}

# What the functions read (shared/oddsbatch/config.py), Terraform's decisions included.
function_environment() {
  local -a pairs=(
    "ODDSBATCH_PROJECT=$project"
    "ODDSBATCH_BUCKET=$bucket"
    "ODDSBATCH_DATASET=$dataset"
    "ODDSBATCH_BIGQUERY_LOCATION=$bigquery_location"
    "ODDSBATCH_FIRESTORE_DATABASE=$firestore_database"
    "ODDSBATCH_FENCE_COLLECTION=$collection_fences"
    "ODDSBATCH_LEDGER_COLLECTION=$collection_ledger"
    "ODDSBATCH_LOCK_COLLECTION=$collection_locks"
    "ODDSBATCH_PENDING_COLLECTION=$collection_pending"
    "ODDSBATCH_RUNS_COLLECTION=$collection_runs"
    "ODDSBATCH_SWEEP_COLLECTION=$collection_sweeps"
    "ODDSBATCH_QUARANTINE_BUCKET=$quarantine_bucket"
    "ODDSBATCH_QUARANTINE_PREFIX=$quarantine_prefix"
    "ODDSBATCH_STAGING_BUCKET=$staging_bucket"
    "ODDSBATCH_SETTLE_SECONDS=$settle_seconds"
    "ODDSBATCH_LEASE_SECONDS=$lease_seconds"
    "ODDSBATCH_TIMEOUT_SECONDS=$timeout_seconds"
    "ODDSBATCH_INSTANCE_MEMORY=$memory"
    "THREADS=$concurrency"
  )
  # No dead-letter topic, no dead letters to drain.
  [[ "$dead_letter_topic" == "none" ]] || pairs+=("ODDSBATCH_DEAD_LETTER_SUBSCRIPTION=$dead_letter_subscription")
  local IFS=,
  echo "${pairs[*]}"
}

# THREADS: functions-framework 3.10.2 runs gunicorn with threads = $THREADS, else 4 per CPU
# (functions_framework/_http/gunicorn.py; PR 259 of functions-framework-python), so with
# --cpu=1 an instance would serve 4 requests at once however high --concurrency is: set it to
# the concurrency. ODDSBATCH_TIMEOUT_SECONDS: the function timeout, the holder's deadline.
deploy_command() {
  local fn="$1"
  cmd=(
    gcloud functions deploy "$fn"
    --gen2
    "--runtime=$RUNTIME"
    "--region=$region"
    "--project=$project"
    "--source=$build_dir/$fn"
    "--entry-point=$fn"
    "--trigger-event-filters=type=$EVENT_TYPE"
    "--trigger-event-filters=bucket=$bucket"
    "--trigger-location=$trigger_location"
    --retry
    "--service-account=$(service_account_for "$fn")"
    "--trigger-service-account=${sa_trigger:-oddsbatch-trigger@${project}.iam.gserviceaccount.com}"
    "--build-service-account=$(build_service_account)"
    --ingress-settings=internal-only
    "--memory=$memory"
    "--timeout=${timeout_seconds}s"
    "--max-instances=$max_instances"
    "--concurrency=$concurrency"
    --cpu=1
    "--set-env-vars=$(function_environment)"
    --no-allow-unauthenticated
  )
}

# One line of shell: words printed as they are when safe, else in single quotes.
shell_words() {
  local word line=""
  for word in "$@"; do
    if [[ ! "$word" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
      word="'${word//\'/\'\\\'\'}'"
    fi
    line+="${line:+ }$word"
  done
  echo "$line"
}

# --- dead letters -------------------------------------------------------------------
# Eventarc delivers over a Pub/Sub subscription it creates with the trigger; an event not
# delivered within its 24 h retention is discarded unless that subscription has a dead-letter
# topic, set by updating the subscription: https://cloud.google.com/eventarc/docs/retry-events
# The function's trigger: EventTrigger.trigger, projects/{project}/locations/{region}/triggers/{trigger}
# (https://docs.cloud.google.com/php/docs/reference/cloud-functions/latest/V2.EventTrigger.md.txt).
# Its subscription: Transport.pubsub.subscription, projects/{PROJECT_ID}/subscriptions/{NAME}
# (https://cloud.google.com/python/docs/reference/eventarc/latest/google.cloud.eventarc_v1.types.Pubsub);
# gcloud eventarc triggers describe takes the trigger's fully qualified name (project and
# location included): https://cloud.google.com/sdk/gcloud/reference/eventarc/triggers/describe
# To forward, the project's Pub/Sub service agent, service-{project_number}@gcp-sa-pubsub,
# needs publisher on the dead-letter topic (Terraform, terraform/sweep.tf) and subscriber on
# the subscription (here): https://cloud.google.com/pubsub/docs/dead-letter-topics and
# https://cloud.google.com/pubsub/docs/handling-failures ; the binding is added with
# https://cloud.google.com/sdk/gcloud/reference/pubsub/subscriptions/add-iam-policy-binding ;
# the number is the project's projectNumber:
# https://cloud.google.com/resource-manager/reference/rest/v1/projects
readonly TRIGGER_RE='^projects/[^/]+/locations/[^/]+/triggers/[^/]+$'
readonly SUBSCRIPTION_RE='^projects/[^/]+/subscriptions/[^/]+$'
readonly SUBSCRIBER_ROLE="roles/pubsub.subscriber"

describe_function_command() {
  cmd=(gcloud functions describe "$1" --gen2 "--region=$region" "--project=$project"
    "--format=value(eventTrigger.trigger)")
}
describe_trigger_command() {
  cmd=(gcloud eventarc triggers describe "$1" "--format=value(transport.pubsub.subscription)")
}
update_subscription_command() {
  cmd=(gcloud pubsub subscriptions update "$1" "--dead-letter-topic=$dead_letter_topic"
    "--max-delivery-attempts=$max_delivery_attempts" "--ack-deadline=$ACK_DEADLINE")
}
describe_project_command() {
  cmd=(gcloud projects describe "$project" "--format=value(projectNumber)")
}
grant_subscriber_command() {
  cmd=(gcloud pubsub subscriptions add-iam-policy-binding "$1" "--role=$SUBSCRIBER_ROLE"
    "--member=serviceAccount:service-$2@gcp-sa-pubsub.iam.gserviceaccount.com")
}

# What to run by hand when a step fails: the dry run's lines for that function.
by_hand() {
  echo "$1 is deployed without its dead-letter policy or sweep trigger; run the lines of ./deploy.sh --dry-run --only $1 (same flags) after its deploy line by hand (README \"Dead letters\")"
}

# Runs cmd and prints its output, which must match $1; else one line naming the command.
capture() {
  local pattern="$1" what="$2" fn="$3" out
  out="$("${cmd[@]}")" || fail "$(shell_words "${cmd[@]}") failed; $(by_hand "$fn")"
  [[ -n "$out" ]] || fail "$(shell_words "${cmd[@]}") printed no $what; $(by_hand "$fn")"
  [[ "$out" =~ $pattern ]] || fail "$(shell_words "${cmd[@]}") printed '$out', not a $what; $(by_hand "$fn")"
  echo "$out"
}

set_dead_letter_policy() {
  local fn="$1" trigger subscription number
  describe_function_command "$fn"
  trigger="$(capture "$TRIGGER_RE" "trigger" "$fn")" || exit $?
  describe_trigger_command "$trigger"
  subscription="$(capture "$SUBSCRIPTION_RE" "subscription" "$fn")" || exit $?
  update_subscription_command "$subscription"
  "${cmd[@]}" || fail "$(shell_words "${cmd[@]}") failed; $(by_hand "$fn")"
  describe_project_command
  number="$(capture '^[0-9]+$' "project number" "$fn")" || exit $?
  grant_subscriber_command "$subscription" "$number"
  "${cmd[@]}" || fail "$(shell_words "${cmd[@]}") failed; $(by_hand "$fn")"
  echo "dead letters of $fn: $subscription -> $dead_letter_topic after $max_delivery_attempts attempts"
}

# The same steps as runnable shell lines: the values known only after the deploy are read
# into TRIGGER, SUB and PROJECT_NUMBER by "$(...)".
print_dead_letter_lines() {
  local fn="$1"
  describe_function_command "$fn"
  echo "TRIGGER=\"\$($(shell_words "${cmd[@]}"))\""
  describe_trigger_command '"$TRIGGER"'
  echo "SUB=\"\$($(shell_words "${cmd[@]:0:4}") \"\$TRIGGER\" $(shell_words "${cmd[@]:5}"))\""
  update_subscription_command '"$SUB"'
  echo "$(shell_words "${cmd[@]:0:4}") \"\$SUB\" $(shell_words "${cmd[@]:5}")"
  describe_project_command
  echo "PROJECT_NUMBER=\"\$($(shell_words "${cmd[@]}"))\""
  grant_subscriber_command '"$SUB"' '${PROJECT_NUMBER}'
  echo "$(shell_words "${cmd[@]:0:4}") \"\$SUB\" $(shell_words "${cmd[5]}") \"--member=serviceAccount:service-\${PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com\""
}

# --- the sweep trigger ------------------------------------------------------------------
# One Eventarc trigger per function on the sweep topic (Terraform's sweep_topic), to the
# function's Cloud Run service (a gen2 function's service is its name with '-' for '_'), as the
# trigger account, which holds run.invoker on the project from the first apply. Eventarc
# refuses a trigger whose Cloud Run service does not exist (a wrong --destination-run-service
# fails the create: googlecodelabs/feedback issue 1619), hence here, after the deploy:
# https://cloud.google.com/sdk/gcloud/reference/eventarc/triggers/create (--destination-run-service,
# --destination-run-region, --event-filters=type=google.cloud.pubsub.topic.v1.messagePublished,
# --transport-topic: an existing topic, --service-account). Made once: an existing trigger is kept.
sweep_trigger_name() { echo "oddsbatch-sweep-${1//_/-}"; }
list_sweep_trigger_command() {
  cmd=(gcloud eventarc triggers list "--location=$region" "--project=$project"
    "--filter=name:$(sweep_trigger_name "$1")" "--format=value(name)")
}
create_sweep_trigger_command() {
  cmd=(gcloud eventarc triggers create "$(sweep_trigger_name "$1")" "--location=$region" "--project=$project"
    "--destination-run-service=${1//_/-}" "--destination-run-region=$region"
    "--event-filters=type=$SWEEP_EVENT_TYPE" "--transport-topic=$sweep_topic"
    "--service-account=${sa_trigger:-oddsbatch-trigger@${project}.iam.gserviceaccount.com}")
}
describe_sweep_trigger_command() {
  cmd=(gcloud eventarc triggers describe "$(sweep_trigger_name "$1")" "--location=$region" "--project=$project"
    "--format=value(transport.pubsub.subscription)")
}
ack_deadline_command() {
  cmd=(gcloud pubsub subscriptions update "$1" "--ack-deadline=$ACK_DEADLINE")
}

set_sweep_trigger() {
  local fn="$1" existing subscription
  list_sweep_trigger_command "$fn"
  existing="$("${cmd[@]}")" || fail "$(shell_words "${cmd[@]}") failed; $(by_hand "$fn")"
  if [[ -z "$existing" ]]; then
    create_sweep_trigger_command "$fn"
    "${cmd[@]}" || fail "$(shell_words "${cmd[@]}") failed; $(by_hand "$fn")"
  fi
  describe_sweep_trigger_command "$fn"
  subscription="$(capture "$SUBSCRIPTION_RE" "subscription" "$fn")" || exit $?
  ack_deadline_command "$subscription"
  "${cmd[@]}" || fail "$(shell_words "${cmd[@]}") failed; $(by_hand "$fn")"
  echo "sweep trigger of $fn: $(sweep_trigger_name "$fn") on $sweep_topic, $subscription acks within ${ACK_DEADLINE}s"
}

print_sweep_trigger_lines() {
  local fn="$1"
  list_sweep_trigger_command "$fn"
  local list_line
  list_line="$(shell_words "${cmd[@]}")"
  create_sweep_trigger_command "$fn"
  echo "if [ -z \"\$($list_line)\" ]; then $(shell_words "${cmd[@]}"); fi"
  describe_sweep_trigger_command "$fn"
  echo "SWEEP_SUB=\"\$($(shell_words "${cmd[@]}"))\""
  ack_deadline_command '"$SWEEP_SUB"'
  echo "$(shell_words "${cmd[@]:0:4}") \"\$SWEEP_SUB\" $(shell_words "${cmd[@]:5}")"
}

for fn in "${selected[@]}"; do
  build_bundle "$fn"
done
if [[ "$mode" == "build-only" ]]; then
  exit 0
fi

cmd=()
for fn in "${selected[@]}"; do
  deploy_command "$fn"
  if [[ "$mode" == "dry-run" ]]; then
    shell_words "${cmd[@]}"
    if [[ "$dead_letter_topic" != "none" ]]; then print_dead_letter_lines "$fn"; fi
    print_sweep_trigger_lines "$fn"
  else
    echo "deploying $fn to $project/$region (bucket $bucket)"
    "${cmd[@]}"
    if [[ "$dead_letter_topic" != "none" ]]; then set_dead_letter_policy "$fn"; fi
    set_sweep_trigger "$fn"
  fi
done
