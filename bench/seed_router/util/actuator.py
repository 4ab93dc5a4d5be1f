"""Stand-in for the recipe's util/actuator.py: Flask's development server on a thread.

Serves /actuator/health (always UP) and /actuator/info. Port 8080 on every interface as
in the recipe (in a pod the kubelet probes the pod's IP); SEED_ACTUATOR_PORT and
SEED_ACTUATOR_HOST move it, so benchmark runs can sit side by side on loopback.
"""
import os
import threading

from flask import Flask, jsonify


class Actuator:

    @classmethod
    def start(cls, port=8080, info=None):
        app = Flask(__name__)

        @app.route('/actuator/health')
        def health():
            return jsonify({'status': 'UP'})

        @app.route('/actuator/info')
        def info_endpoint():
            return jsonify(info or {})

        port = int(os.getenv('SEED_ACTUATOR_PORT', port))
        host = os.getenv('SEED_ACTUATOR_HOST', '0.0.0.0')
        thread = threading.Thread(target=app.run, kwargs={'host': host, 'port': port},
                                  daemon=True)
        thread.start()
        return thread
