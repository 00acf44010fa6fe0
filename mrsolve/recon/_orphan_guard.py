"""Imported first by ``recon batch``'s forkserver so that it dies with the batch driver.

Importing this module arms the parent-death signal of the importing process
(:func:`mrsolve.recon.batch.die_with_parent`); nothing else imports it.
"""

from mrsolve.recon.batch import die_with_parent

die_with_parent()
