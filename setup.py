"""diprocd: the DIstributed PROcess Control Daemon."""
import os
import re

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, 'dpd', '__init__.py')) as f:
    VERSION = re.search(r"__version__ = '([^']+)'", f.read()).group(1)

setup(
    name='diprocd',
    version=VERSION,
    description='Distributed process control: one JSON file per node, a worker that keeps '
                'it running, a master that pushes each node its list',
    long_description=open(os.path.join(HERE, 'README')).read(),
    long_description_content_type='text/markdown',
    license='GPL-2.0-or-later',
    packages=['dpd', 'dpd.worker', 'dpd.cluster', 'dpd.ctl'],
    python_requires='>=3.11',
    install_requires=['pyzmq>=24'],
    extras_require={'fast': ['simplejson'], 'test': ['pytest', 'hypothesis']},
    entry_points={'console_scripts': [
        'dpd-workerd = dpd.worker.main:main',
        'dpd-masterd = dpd.cluster.masterd:main',
        'dpd-clientd = dpd.cluster.clientd:main',
        'dpd-ctl = dpd.ctl.main:main',
    ]},
    data_files=[('share/doc/diprocd', [os.path.join('examples', name)
                                       for name in sorted(os.listdir(os.path.join(HERE, 'examples')))
                                       if name.endswith('.json')])],
    classifiers=[
        'Environment :: No Input/Output (Daemon)',
        'License :: OSI Approved :: GNU General Public License v2 or later (GPLv2+)',
        'Operating System :: POSIX :: Linux',
        'Programming Language :: Python :: 3',
        'Topic :: System :: Monitoring',
    ],
)
