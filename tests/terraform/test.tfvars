# The inputs the evaluated assertions run with.
project_id = "oddsbatch-test"
bucket = {
  name = "oddsbatch-test-landing"
}
alert_notification_channels = ["projects/oddsbatch-test/notificationChannels/123"]
