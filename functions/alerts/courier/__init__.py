"""Alert delivery: findings from the alerts topic to Slack and Security Hub, one alert per incident."""
