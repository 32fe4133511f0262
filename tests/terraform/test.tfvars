# The inputs the evaluated assertions run with (a deployment after deploy.sh ran).
project_id = "oddsbatch-test"
bucket = {
  name = "oddsbatch-test-landing"
}
functions_deployed          = true
alert_notification_channels = ["projects/oddsbatch-test/notificationChannels/123"]
