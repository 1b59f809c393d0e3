"""The HTML side: pages (``pages``), sign-in (``auth``), the admin page (``admin``) and the picture files
the pages show (``files``); and what every request passes through: access and headers (``security``), body
limits and the upload budget (``uploads``)."""
