"""`manage.py serve`: uvicorn runs the ASGI application with the settings SafeRoll relies on."""

import io

import uvicorn
from django.core.management import call_command

from saferoll.portal.management.commands import serve


def test_it_configures_uvicorn_for_the_asgi_application():
    config = serve.server_config(host="0.0.0.0", port=9000)

    assert config.app == "saferoll.asgi:application"
    assert (config.host, config.port) == ("0.0.0.0", 9000)
    assert config.proxy_headers is False
    assert config.log_level == "info"
    assert config.ws == "websockets-sansio"


def test_it_runs_the_server_with_the_host_and_port_given(monkeypatch):
    started = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: started.append(self.config))

    out = io.StringIO()
    call_command("serve", "--host", "127.0.0.2", "--port", "8123", stdout=out)

    assert [(config.host, config.port) for config in started] == [("127.0.0.2", 8123)]
    assert "http://127.0.0.2:8123/" in out.getvalue()


def test_it_stops_cleanly_on_ctrl_c(monkeypatch):
    def interrupted(self, sockets=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(uvicorn.Server, "run", interrupted)

    out = io.StringIO()
    call_command("serve", stdout=out)

    assert "SafeRoll stopped." in out.getvalue()
