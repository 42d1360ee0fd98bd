"""The exfiltration detection engine: one engine for the Lambda (log files and management
events) and for the offline scanner (`stagewarden scan cloudtrail`)."""
