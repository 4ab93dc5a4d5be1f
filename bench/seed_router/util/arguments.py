"""Stand-in for the recipe's util/arguments.py: exec-style `--key=value` arguments only.

Written for this project to behave like the original helper: values come from
sys.argv (first occurrence wins, missing keys read as ''), the broker list from the
SPRING_CLOUD_STREAM_KAFKA_BINDER_BROKERS environment variable that SCDF sets.
"""
import os
import sys


def _args():
    found = {}
    for arg in sys.argv[1:]:
        key, value = arg.split('=', 1)  # like the original: an argument without '=' crashes
        found.setdefault(key.lstrip('-'), value)
    return found


def get_cmd_arg(name):
    return _args().get(name, '')


def get_channel_topic(channel_name):
    return get_cmd_arg('spring.cloud.stream.bindings.{}.destination'.format(channel_name))


def get_kafka_brokers():
    return os.getenv('SPRING_CLOUD_STREAM_KAFKA_BINDER_BROKERS', '')


def get_env_info():
    return {
        'stream-name': get_cmd_arg('spring.cloud.dataflow.stream.name'),
        'app-name': get_cmd_arg('spring.cloud.dataflow.stream.app.label'),
        'app-guid': os.getenv('SPRING_CLOUD_APPLICATION_GUID', ''),
        'kafka-brokers': get_kafka_brokers(),
        'input': get_channel_topic('input'),
        'even': get_channel_topic('even'),
        'odd': get_channel_topic('odd'),
    }
