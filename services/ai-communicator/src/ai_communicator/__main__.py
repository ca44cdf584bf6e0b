from multyworkemon_common.app import run_service

from .app import create_app

run_service(create_app())
