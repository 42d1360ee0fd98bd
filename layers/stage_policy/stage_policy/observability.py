"""Logger, Metrics and Tracer singletons for every function (service name from POWERTOOLS_SERVICE_NAME).

Imported by handlers only: the policy model does not pay for Powertools.
"""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
metrics = Metrics()
tracer = Tracer()
