"""Stand-in for the recipe's util/actuator.py: Flask's development server on a thread.

Serves /actuator/health (always UP) and /actuator/info. Port 8080 as in the recipe,
movable only through SEED_ACTUATOR_PORT so benchmark runs can sit side by side.
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
        thread = threading.Thread(target=app.run, kwargs={'host': '127.0.0.1', 'port': port},
                                  daemon=True)
        thread.start()
        return thread
