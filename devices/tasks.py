from celery import shared_task

from devices.services import devices_mark_offline


@shared_task(time_limit=60, soft_time_limit=50)
def mark_silent_devices_offline() -> int:
    return devices_mark_offline()
