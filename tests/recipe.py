"""The seed's recipe as its user types it in the SCDF shell (`app register`, `stream create`,
`stream deploy --propertiesFile polyglot-python-app-deployment.properties`), declared once for
the tests that replay it through the REST API the shell calls or parse what SCDF records of it."""

from __future__ import annotations

STREAM = "timeStampStream"
DEFINITION = "time || python-router || evenLogger: log || oddLogger: log"
# The seed's registrations: (name, version, URI).
TIME_APP = ("time", "2.1.0.RELEASE", "docker:springcloudstream/time-source-kafka:2.1.0.RELEASE")
LOG_APP = ("log", "2.1.1.RELEASE", "docker:springcloudstream/log-sink-kafka:2.1.1.RELEASE")
ROUTER_APP = ("python-router", "0.2", "docker://springcloud/polyglot-python-app:0.2")
APPS = (TIME_APP, LOG_APP, ROUTER_APP)
# polyglot-python-app-deployment.properties, all six lines and nothing else.
PROPERTIES = {
    "app.time.spring.cloud.stream.bindings.output.destination": "timeDest",
    "app.python-router.spring.cloud.stream.bindings.input.destination": "timeDest",
    "app.python-router.spring.cloud.stream.bindings.even.destination": "evenDest",
    "app.python-router.spring.cloud.stream.bindings.odd.destination": "oddDest",
    "app.evenLogger.spring.cloud.stream.bindings.input.destination": "evenDest",
    "app.oddLogger.spring.cloud.stream.bindings.input.destination": "oddDest",
}
TOPICS = {"input": "timeDest", "even": "evenDest", "odd": "oddDest"}
# Each app of the stream with the URI it was registered under.
IMAGES = {"time": TIME_APP[2], "python-router": ROUTER_APP[2], "evenLogger": LOG_APP[2], "oddLogger": LOG_APP[2]}
# What the recipe's router writes: a space after the even prefix's colon, none after the odd one's.
ROUTER_EVEN, ROUTER_ODD = "Even timestamp: ", "Odd timestamp:"
# The paths the recipe's router serves (its util/actuator.py).
ROUTER_ACTUATOR = frozenset({"/actuator/health", "/actuator/info"})
