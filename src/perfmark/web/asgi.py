"""The entry point uvicorn workers import: builds the app from settings in the environment."""

from __future__ import annotations

from fastapi import FastAPI

from perfmark.services.container import build_container
from perfmark.settings import load_settings
from perfmark.web.app import create_app

__all__ = ["app_factory"]


def app_factory() -> FastAPI:
    """Build one worker's app; the parent process has already migrated the store."""
    return create_app(build_container(load_settings(), run_migrations=False))
